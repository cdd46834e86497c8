package dev.jsloth.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;

/**
 * Single-precision GEMM, {@code C += alpha * op(A) op(B)} (C pre-scaled by beta), in the BLIS layout: B is packed
 * into {@code KC x NR} column panels and A into {@code MR x KC} row panels (any storage type is widened to float
 * while packing), and a register-blocked {@code MR x NR} microkernel with {@code MR*NR/L} vector accumulators
 * runs over the packed panels. Work is split over (row block, column-panel range) pairs so that both tall and
 * short-wide products (LoRA's) keep every thread busy.
 */
final class GemmF32 {
    private static final VectorSpecies<Float> SP = FloatVector.SPECIES_PREFERRED;
    private static final int L = SP.length();
    static final int MR = 6;
    static final int NR = 2 * L;
    private static final int KC = 256;
    private static final int MC = MR * 16;
    private static final int NC = NR * (2048 / NR);

    private static final ThreadLocal<float[]> A_PACK = ThreadLocal.withInitial(() -> new float[MC * KC]);
    private static final ThreadLocal<float[]> B_PACK = ThreadLocal.withInitial(() -> new float[KC * NC]);
    private static final ThreadLocal<float[]> ROW = ThreadLocal.withInitial(() -> new float[KC]);
    private static final ThreadLocal<float[]> ROW_WIDE = ThreadLocal.withInitial(() -> new float[NC + NR]);
    private static final ThreadLocal<float[]> CTILE = ThreadLocal.withInitial(() -> new float[MR * NR]);

    private GemmF32() {
    }

    /** C (F32, row-major m x n, already scaled by beta) += alpha * op(A) op(B). */
    static void multiply(int m, int n, int k, float alpha, Matrix a, Matrix b, MemorySegment c) {
        if (m == 0 || n == 0 || k == 0 || alpha == 0) return;
        float[] bp = B_PACK.get();
        for (int jc = 0; jc < n; jc += NC) {
            int nc = Math.min(NC, n - jc);
            int panels = ceilDiv(nc, NR);
            for (int pc = 0; pc < k; pc += KC) {
                int kc = Math.min(KC, k - pc);
                int jcf = jc, pcf = pc;
                if (b.trans()) {
                    Parallel.forRange(panels, 8, (lo, hi) -> {
                        for (int q = lo; q < hi; q++) packB(b, pcf, kc, jcf + q * NR, Math.min(NR, nc - q * NR), bp, q * kc * NR);
                    });
                } else {
                    Parallel.forRange(kc, 16, (lo, hi) -> packBRows(b, pcf, lo, hi, kc, jcf, nc, bp));
                }
                int mBlocks = ceilDiv(m, MC);
                int splits = Math.max(1, Math.min(panels, ceilDiv(Parallel.THREADS * 2, mBlocks)));
                Parallel.forRange(mBlocks * splits, 1, (lo, hi) -> {
                    float[] ap = A_PACK.get(), ct = CTILE.get();
                    for (int u = lo; u < hi; u++) {
                        int ib = u / splits, s = u % splits;
                        int ic = ib * MC, mc = Math.min(MC, m - ic);
                        packA(a, ic, mc, pcf, kc, ap);
                        int q0 = panels * s / splits, q1 = panels * (s + 1) / splits;
                        for (int q = q0; q < q1; q++) {
                            int col = jcf + q * NR, nr = Math.min(NR, n - col);
                            for (int ir = 0; ir < mc; ir += MR) {
                                microkernel(kc, ap, ir * kc, bp, q * kc * NR, c, n, ic + ir, col, Math.min(MR, mc - ir), nr, alpha, ct);
                            }
                        }
                    }
                });
            }
        }
    }

    private static int ceilDiv(int a, int b) {
        return (a + b - 1) / b;
    }

    /** Packs op(A)[ic..ic+mc, pc..pc+kc] as MR-row panels, k-major inside a panel, zero-padded. */
    private static void packA(Matrix a, int ic, int mc, int pc, int kc, float[] ap) {
        for (int ir = 0; ir < mc; ir += MR) {
            int mr = Math.min(MR, mc - ir);
            int base = ir * kc;
            if (a.trans()) {
                for (int p = 0; p < kc; p++) {
                    a.codec().readFloats(a.seg(), a.at(ic + ir, pc + p), ap, base + p * MR, mr);
                    for (int r = mr; r < MR; r++) ap[base + p * MR + r] = 0f;
                }
            } else {
                float[] row = ROW.get();
                for (int r = 0; r < MR; r++) {
                    if (r < mr) {
                        a.codec().readFloats(a.seg(), a.at(ic + ir + r, pc), row, 0, kc);
                        for (int p = 0; p < kc; p++) ap[base + p * MR + r] = row[p];
                    } else {
                        for (int p = 0; p < kc; p++) ap[base + p * MR + r] = 0f;
                    }
                }
            }
        }
    }

    /**
     * Packs rows {@code [p0, p1)} of op(B)[pc.., jc..jc+nc] for a non-transposed B: each row is read once, whole
     * (one bulk copy), and cut into the NR-wide panels — far fewer, larger reads than panel by panel, which matters
     * when M is small (LoRA's dA = dYB^T X) and packing B is a large share of the work.
     */
    private static void packBRows(Matrix b, int pc, int p0, int p1, int kc, int jc, int nc, float[] bp) {
        float[] row = ROW_WIDE.get();
        int panels = ceilDiv(nc, NR);
        for (int p = p0; p < p1; p++) {
            b.codec().readFloats(b.seg(), b.at(pc + p, jc), row, 0, nc);
            java.util.Arrays.fill(row, nc, panels * NR, 0f);
            for (int q = 0; q < panels; q++) System.arraycopy(row, q * NR, bp, q * kc * NR + p * NR, NR);
        }
    }

    /** Packs op(B)[pc..pc+kc, col..col+nr] as one NR-column panel, row-major inside, zero-padded. */
    private static void packB(Matrix b, int pc, int kc, int col, int nr, float[] bp, int base) {
        if (!b.trans()) {
            for (int p = 0; p < kc; p++) {
                b.codec().readFloats(b.seg(), b.at(pc + p, col), bp, base + p * NR, nr);
                for (int j = nr; j < NR; j++) bp[base + p * NR + j] = 0f;
            }
        } else {
            float[] row = ROW.get();
            for (int j = 0; j < NR; j++) {
                if (j < nr) {
                    b.codec().readFloats(b.seg(), b.at(pc, col + j), row, 0, kc);
                    for (int p = 0; p < kc; p++) bp[base + p * NR + j] = row[p];
                } else {
                    for (int p = 0; p < kc; p++) bp[base + p * NR + j] = 0f;
                }
            }
        }
    }

    /** C[row.., col..] += alpha * (A panel x B panel) for an mr x nr tile (MR x NR when full). */
    private static void microkernel(int kc, float[] ap, int ao, float[] bp, int bo, MemorySegment c, int ldc,
                                    int row, int col, int mr, int nr, float alpha, float[] t) {
        FloatVector c00 = FloatVector.zero(SP), c01 = FloatVector.zero(SP);
        FloatVector c10 = FloatVector.zero(SP), c11 = FloatVector.zero(SP);
        FloatVector c20 = FloatVector.zero(SP), c21 = FloatVector.zero(SP);
        FloatVector c30 = FloatVector.zero(SP), c31 = FloatVector.zero(SP);
        FloatVector c40 = FloatVector.zero(SP), c41 = FloatVector.zero(SP);
        FloatVector c50 = FloatVector.zero(SP), c51 = FloatVector.zero(SP);
        for (int p = 0; p < kc; p++, ao += MR, bo += NR) {
            FloatVector b0 = FloatVector.fromArray(SP, bp, bo);
            FloatVector b1 = FloatVector.fromArray(SP, bp, bo + L);
            FloatVector a = FloatVector.broadcast(SP, ap[ao]);
            c00 = a.fma(b0, c00);
            c01 = a.fma(b1, c01);
            a = FloatVector.broadcast(SP, ap[ao + 1]);
            c10 = a.fma(b0, c10);
            c11 = a.fma(b1, c11);
            a = FloatVector.broadcast(SP, ap[ao + 2]);
            c20 = a.fma(b0, c20);
            c21 = a.fma(b1, c21);
            a = FloatVector.broadcast(SP, ap[ao + 3]);
            c30 = a.fma(b0, c30);
            c31 = a.fma(b1, c31);
            a = FloatVector.broadcast(SP, ap[ao + 4]);
            c40 = a.fma(b0, c40);
            c41 = a.fma(b1, c41);
            a = FloatVector.broadcast(SP, ap[ao + 5]);
            c50 = a.fma(b0, c50);
            c51 = a.fma(b1, c51);
        }
        // C += alpha * acc through a heap tile: rows are bulk-copied in and out (memcpy), the arithmetic runs on
        // arrays. Vector loads/stores straight from the native segment measured half the kernel's speed.
        for (int r = 0; r < mr; r++) MemorySegment.copy(c, ElementCodec.FLOAT, ((long) (row + r) * ldc + col) * 4, t, r * NR, nr);
        FloatVector av = FloatVector.broadcast(SP, alpha);
        c00.fma(av, FloatVector.fromArray(SP, t, 0)).intoArray(t, 0);
        c01.fma(av, FloatVector.fromArray(SP, t, L)).intoArray(t, L);
        c10.fma(av, FloatVector.fromArray(SP, t, 2 * L)).intoArray(t, 2 * L);
        c11.fma(av, FloatVector.fromArray(SP, t, 3 * L)).intoArray(t, 3 * L);
        c20.fma(av, FloatVector.fromArray(SP, t, 4 * L)).intoArray(t, 4 * L);
        c21.fma(av, FloatVector.fromArray(SP, t, 5 * L)).intoArray(t, 5 * L);
        c30.fma(av, FloatVector.fromArray(SP, t, 6 * L)).intoArray(t, 6 * L);
        c31.fma(av, FloatVector.fromArray(SP, t, 7 * L)).intoArray(t, 7 * L);
        c40.fma(av, FloatVector.fromArray(SP, t, 8 * L)).intoArray(t, 8 * L);
        c41.fma(av, FloatVector.fromArray(SP, t, 9 * L)).intoArray(t, 9 * L);
        c50.fma(av, FloatVector.fromArray(SP, t, 10 * L)).intoArray(t, 10 * L);
        c51.fma(av, FloatVector.fromArray(SP, t, 11 * L)).intoArray(t, 11 * L);
        for (int r = 0; r < mr; r++) MemorySegment.copy(t, r * NR, c, ElementCodec.FLOAT, ((long) (row + r) * ldc + col) * 4, nr);
    }
}
