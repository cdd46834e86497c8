package dev.jsloth.cuda;

import dev.jsloth.api.DType;
import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The row-major to column-major mapping handed to cuBLASLt, and the tiling of converted operands, checked on the
 * host: a small emulation of cuBLAS's column-major GEMM runs the exact (transa, transb, m, n, k, layouts, pointer
 * offsets) the backend would pass, and must reproduce the row-major reference.
 */
class GemmMappingTest {
    private static final ElementType T = ElementType.F32;

    /** Row-major reference: C = alpha op(A) op(B) + beta C. */
    static double[] reference(boolean ta, boolean tb, double alpha, double[] a, int ar, int ac, double[] b, int br, int bc,
                              double beta, double[] c) {
        int m = ta ? ac : ar, k = ta ? ar : ac, n = tb ? br : bc;
        double[] out = c.clone();
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int p = 0; p < k; p++) s += (ta ? a[p * ac + i] : a[i * ac + p]) * (tb ? b[j * bc + p] : b[p * bc + j]);
                out[i * n + j] = alpha * s + beta * c[i * n + j];
            }
        return out;
    }

    /** cuBLAS semantics: D = alpha op(A') op(B') + beta C, column-major, pointers as byte offsets into the arrays. */
    static void columnMajor(ColumnMajorGemm p, double[] a, long aPtr, double[] b, long bPtr, double[] c, long cPtr,
                            double alpha, double beta) {
        checkLayout(p.a(), p.transa(), p.m(), p.k());
        checkLayout(p.b(), p.transb(), p.k(), p.n());
        assertEquals(p.m(), p.c().rows());
        assertEquals(p.n(), p.c().cols());
        assertTrue(p.c().ld() >= p.c().rows());
        long ao = aPtr / T.bytes, bo = bPtr / T.bytes, co = cPtr / T.bytes;
        for (long i = 0; i < p.m(); i++)
            for (long j = 0; j < p.n(); j++) {
                double s = 0;
                for (long q = 0; q < p.k(); q++) {
                    double x = p.transa() == CublasLt.OP_N ? a[(int) (ao + i + q * p.a().ld())] : a[(int) (ao + q + i * p.a().ld())];
                    double y = p.transb() == CublasLt.OP_N ? b[(int) (bo + q + j * p.b().ld())] : b[(int) (bo + j + q * p.b().ld())];
                    s += x * y;
                }
                int idx = (int) (co + i + j * p.c().ld());
                c[idx] = alpha * s + beta * c[idx];
            }
    }

    /** The layout of an operand that, after op, is rows x cols, as cuBLAS requires. */
    private static void checkLayout(ColumnMajorGemm.Layout l, int op, long rows, long cols) {
        assertEquals(op == CublasLt.OP_N ? rows : cols, l.rows());
        assertEquals(op == CublasLt.OP_N ? cols : rows, l.cols());
        assertTrue(l.ld() >= l.rows(), "ld " + l.ld() + " < rows " + l.rows());
    }

    static double[] random(SplittableRandom r, int n) {
        double[] v = new double[n];
        for (int i = 0; i < n; i++) v[i] = r.nextInt(-4, 5);
        return v;
    }

    @Test
    void columnMajorMappingReproducesRowMajorProducts() {
        SplittableRandom r = new SplittableRandom(1);
        for (int trial = 0; trial < 300; trial++) {
            int m = r.nextInt(1, 9), n = r.nextInt(1, 9), k = r.nextInt(1, 9);
            boolean ta = r.nextBoolean(), tb = r.nextBoolean();
            int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
            double[] a = random(r, ar * ac), b = random(r, br * bc), c = random(r, m * n);
            double alpha = r.nextInt(-2, 3), beta = r.nextInt(-2, 3);
            double[] want = reference(ta, tb, alpha, a, ar, ac, b, br, bc, beta, c);
            MatrixRef ra = MatrixRef.dense(0, T, ar, ac, ta), rb = MatrixRef.dense(0, T, br, bc, tb), rc = MatrixRef.dense(0, T, m, n, false);
            ColumnMajorGemm p = ColumnMajorGemm.of(ra, rb, rc);
            double[] got = c.clone();
            columnMajor(p, b, rb.ptr(), a, ra.ptr(), got, rc.ptr(), alpha, beta); // cuBLAS's A is our B
            assertArrayEquals(want, got, 1e-9, "m=" + m + " n=" + n + " k=" + k + " ta=" + ta + " tb=" + tb);
        }
    }

    @Test
    void tilesOfEitherOperandReproduceTheProduct() {
        SplittableRandom r = new SplittableRandom(2);
        for (int trial = 0; trial < 400; trial++) {
            int m = r.nextInt(1, 10), n = r.nextInt(1, 10), k = r.nextInt(1, 10);
            boolean ta = r.nextBoolean(), tb = r.nextBoolean(), tileA = r.nextBoolean();
            int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
            double[] a = random(r, ar * ac), b = random(r, br * bc), c = random(r, m * n);
            double alpha = r.nextInt(-2, 3), beta = r.nextInt(-2, 3);
            double[] want = reference(ta, tb, alpha, a, ar, ac, b, br, bc, beta, c);
            MatrixRef ra = MatrixRef.dense(0, T, ar, ac, ta), rb = MatrixRef.dense(0, T, br, bc, tb), rc = MatrixRef.dense(0, T, m, n, false);
            MatrixRef x = tileA ? ra : rb;
            double[] xs = tileA ? a : b;
            int rowsPerTile = r.nextInt(1, (int) x.rows() + 1);
            double[] got = c.clone();
            boolean first = true;
            for (long r0 = 0; r0 < x.rows(); r0 += rowsPerTile) {
                long count = Math.min(rowsPerTile, x.rows() - r0);
                double[] scratch = java.util.Arrays.copyOfRange(xs, (int) (r0 * x.cols()), (int) ((r0 + count) * x.cols()));
                MatrixRef conv = MatrixRef.dense(0, T, count, x.cols(), x.trans());
                GemmTiling.Tile t = tileA ? GemmTiling.ofA(ra, rb, rc, r0, count, conv) : GemmTiling.ofB(ra, rb, rc, r0, count, conv);
                double tileBeta = t.accumulates() && !first ? 1 : beta;
                double[] aArr = tileA ? scratch : a, bArr = tileA ? b : scratch;
                columnMajor(ColumnMajorGemm.of(t.a(), t.b(), t.c()), bArr, t.b().ptr(), aArr, t.a().ptr(), got, t.c().ptr(), alpha, tileBeta);
                first = false;
            }
            assertArrayEquals(want, got, 1e-9,
                    "m=" + m + " n=" + n + " k=" + k + " ta=" + ta + " tb=" + tb + " tileA=" + tileA + " rows/tile=" + rowsPerTile);
        }
    }

    /**
     * Tile heights: what the budget holds, rounded down to a multiple of 128 rows when more than one tile is needed and
     * the budget holds at least 128 rows (so every tile starts on a 256-byte boundary for cuBLASLt); a whole operand in one tile
     * as it is; tiny budgets (the tests' tiled paths) as before.
     */
    @Test
    void tileHeightsAreMultiplesOf128RowsWhereTheyCanBe() {
        long budget = GemmOp.TILE_ELEMENTS;
        assertEquals(2304, GemmOp.rowsPerTile(4096, 14336, budget), "8B down projection: 2,340 rows fit");
        assertEquals(8192, GemmOp.rowsPerTile(14336, 4096, budget), "8B gate/up");
        assertEquals(4096, GemmOp.rowsPerTile(4096, 4096, budget), "one tile: all rows");
        assertEquals(2048, GemmOp.rowsPerTile(2048, 5632, budget), "tinyllama down: one tile");
        assertEquals(1000, GemmOp.rowsPerTile(1000, 7, 7000), "one tile of any height");
        assertEquals(100, GemmOp.rowsPerTile(1000, 10, 1000), "under 128 rows: as the budget says");
        assertEquals(1, GemmOp.rowsPerTile(5, 2000, 1000), "at least one row");
        SplittableRandom r = new SplittableRandom(3);
        for (int trial = 0; trial < 2000; trial++) {
            long rows = r.nextLong(1, 20000), cols = r.nextLong(1, 20000), tile = r.nextLong(1, 1L << 26);
            long h = GemmOp.rowsPerTile(rows, cols, tile);
            long fit = Math.max(1, Math.min(rows, tile / cols));
            assertTrue(h >= 1 && h <= fit, rows + " x " + cols + " in " + tile + ": " + h);
            if (h < rows && fit >= 128) assertEquals(0, h % 128, rows + " x " + cols + " in " + tile + ": " + h);
            if (fit >= 128) assertTrue(h > fit - 128, "rounded down by less than 128 rows: " + h + " of " + fit);
        }
    }

    @Test
    void operandTypesFollowTheOutputType() {
        assertEquals(ElementType.F64, GemmOp.operandType(ElementType.F64, DType.F32, DType.BF16));
        assertEquals(ElementType.F64, GemmOp.operandType(ElementType.F64, DType.NF4, DType.F64));
        assertEquals(ElementType.F32, GemmOp.operandType(ElementType.F32, DType.F32, DType.F32));
        assertEquals(ElementType.BF16, GemmOp.operandType(ElementType.F32, DType.BF16, DType.BF16));
        assertEquals(ElementType.F16, GemmOp.operandType(ElementType.F32, DType.F16, DType.F16));
        assertEquals(ElementType.F32, GemmOp.operandType(ElementType.F32, DType.F32, DType.BF16));
        assertEquals(ElementType.F32, GemmOp.operandType(ElementType.F32, DType.F64, DType.F64));
        assertEquals(ElementType.F32, GemmOp.operandType(ElementType.F32, DType.F32, DType.NF4));
        assertEquals(ElementType.BF16, GemmOp.operandType(ElementType.BF16, DType.BF16, DType.BF16));
        assertNull(GemmOp.operandType(ElementType.BF16, DType.F32, DType.F32));
        assertNull(GemmOp.operandType(ElementType.F16, DType.BF16, DType.BF16));
        for (ElementType in : ElementType.values())
            for (ElementType out : ElementType.values()) {
                ElementType want = GemmOp.operandType(out, in.dtype, in.dtype);
                if (want != null) assertTrue(CublasGemm.supports(want, out), in + " -> " + out);
            }
    }

    @Test
    void alignmentIsTheLargestPowerOfTwoUpTo256() {
        assertEquals(256, CublasGemm.alignment(0));
        assertEquals(256, CublasGemm.alignment(0x7f0000001000L));
        assertEquals(4, CublasGemm.alignment(0x7f0000001004L));
        assertEquals(16, CublasGemm.alignment(0x7f0000001010L));
    }
}
