package dev.jsloth.cpu;

import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;

/**
 * Double-precision GEMM for the reference paths (gradient checks, F64 parity): op(B) is packed once into a
 * row-major {@code k x n} array; rows of C are computed four at a time as vector AXPYs over B's rows, blocked
 * over k so the four C rows and the B block stay in cache; threads split the rows.
 */
final class GemmF64 {
    private static final VectorSpecies<Double> SP = DoubleVector.SPECIES_PREFERRED;
    private static final int ROWS = 4;
    private static final int KB = 128;

    private GemmF64() {
    }

    /** C (F64, m x n, already scaled by beta) += alpha * op(A) op(B). */
    static void multiply(int m, int n, int k, double alpha, Matrix a, Matrix b, MemorySegment c) {
        if (m == 0 || n == 0 || k == 0 || alpha == 0) return;
        if ((long) k * n > Integer.MAX_VALUE - 16) throw new IllegalArgumentException("F64 GEMM operand too large: " + k + "x" + n);
        double[] bp = new double[k * n];
        Parallel.forRange(k, 16, (lo, hi) -> {
            double[] row = new double[n];
            for (int p = lo; p < hi; p++) {
                if (!b.trans()) b.codec().read(b.seg(), b.at(p, 0), bp, p * n, n);
                else {
                    for (int j = 0; j < n; j++) row[j] = b.codec().get(b.seg(), b.at(p, j));
                    System.arraycopy(row, 0, bp, p * n, n);
                }
            }
        });
        int blocks = (m + ROWS - 1) / ROWS;
        Parallel.forRange(blocks, 1, (lo, hi) -> {
            double[] ar = new double[ROWS * k];
            double[] cr = new double[ROWS * n];
            for (int blk = lo; blk < hi; blk++) {
                int i0 = blk * ROWS, rows = Math.min(ROWS, m - i0);
                for (int r = 0; r < rows; r++) {
                    if (!a.trans()) a.codec().read(a.seg(), a.at(i0 + r, 0), ar, r * k, k);
                    else for (int p = 0; p < k; p++) ar[r * k + p] = a.codec().get(a.seg(), a.at(i0 + r, p));
                }
                java.util.Arrays.fill(cr, 0, rows * n, 0.0);
                for (int p0 = 0; p0 < k; p0 += KB) {
                    int p1 = Math.min(k, p0 + KB);
                    for (int r = 0; r < rows; r++) {
                        for (int p = p0; p < p1; p++) {
                            double av = ar[r * k + p];
                            if (av != 0) axpy(av, bp, p * n, cr, r * n, n);
                        }
                    }
                }
                for (int r = 0; r < rows; r++) {
                    long base = (long) (i0 + r) * n;
                    for (int j = 0; j < n; j++) {
                        long idx = base + j;
                        c.setAtIndex(ElementCodec.DOUBLE, idx, c.getAtIndex(ElementCodec.DOUBLE, idx) + alpha * cr[r * n + j]);
                    }
                }
            }
        });
    }

    private static void axpy(double a, double[] x, int xo, double[] y, int yo, int n) {
        int j = 0;
        DoubleVector av = DoubleVector.broadcast(SP, a);
        for (int upper = SP.loopBound(n); j < upper; j += SP.length()) {
            DoubleVector.fromArray(SP, x, xo + j).fma(av, DoubleVector.fromArray(SP, y, yo + j)).intoArray(y, yo + j);
        }
        for (; j < n; j++) y[yo + j] += a * x[xo + j];
    }
}
