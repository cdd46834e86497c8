package dev.jsloth.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * Single-precision GEMM, {@code C += alpha * op(A) op(B)} (C pre-scaled by beta), in the BLIS layout: B is packed
 * into {@code KC x NR} column panels and A into {@code MR x KC} row panels (any storage type is widened to float
 * while packing), and a register-blocked {@code MR x NR} microkernel with {@code MR*NR/L} vector accumulators
 * runs over the packed panels. The packed panels the microkernel reads live off-heap: vector loads and broadcasts
 * from a MemorySegment measured 76 GFLOP/s on one core here, the same kernel on float[] 45 (array range checks in
 * the inner loop). Work is split over (row block, column-panel range) pairs so that both tall and
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

    private static final ThreadLocal<float[]> ROW = ThreadLocal.withInitial(() -> new float[Math.max(KC, MC)]);
    private static final ThreadLocal<float[]> ROW_WIDE = ThreadLocal.withInitial(() -> new float[NC + NR]);
    private static final ThreadLocal<float[]> CTILE = ThreadLocal.withInitial(() -> new float[MR * NR]);
    private static final ThreadLocal<float[]> UTILE = ThreadLocal.withInitial(() -> new float[MR * NR]);
    private static final ThreadLocal<MemorySegment> A_SEG = ThreadLocal.withInitial(() -> Arena.ofAuto().allocate((long) MC * KC * 4, 64));
    private static final ThreadLocal<MemorySegment> B_SEG = ThreadLocal.withInitial(() -> Arena.ofAuto().allocate((long) KC * NC * 4, 64));
    private static final ValueLayout.OfFloat PACKED = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();

    private GemmF32() {
    }

    /** Products this short (M rows) read a plain F32 B in place: packing it would cost more than its reuse saves. */
    static final int DIRECT_B_MAX_M = 4 * MR;

    /**
     * C (F32, row-major m x n, already scaled by beta) += alpha * op(A) op(B). Operands are packed, except where
     * packing does not pay: a plain F32 A when N fits one panel (LoRA's X A^T), a plain F32 B when M is at most
     * {@link #DIRECT_B_MAX_M} (LoRA's dA = dYB^T X); the microkernel then reads them where they are.
     */
    static void multiply(int m, int n, int k, float alpha, Matrix a, Matrix b, MemorySegment c) {
        if (m == 0 || n == 0 || k == 0 || alpha == 0) return;
        MemorySegment bs = B_SEG.get();
        boolean directA = !a.trans() && a.codec() == ElementCodec.F32 && n <= NR;
        boolean directB = !b.trans() && b.codec() == ElementCodec.F32 && m <= DIRECT_B_MAX_M;
        for (int jc = 0; jc < n; jc += NC) {
            int nc = Math.min(NC, n - jc);
            int panels = ceilDiv(nc, NR);
            for (int pc = 0; pc < k; pc += KC) {
                int kc = Math.min(KC, k - pc);
                int jcf = jc, pcf = pc;
                if (directB) {
                    if (nc % NR != 0) packBPanel(b, pcf, kc, jcf + (panels - 1) * NR, nc % NR, bs, (panels - 1) * kc * NR);
                } else if (b.trans()) {
                    Parallel.forRange(panels, 8, (lo, hi) -> {
                        for (int q = lo; q < hi; q++) packB(b, pcf, kc, jcf + q * NR, Math.min(NR, nc - q * NR), bs, q * kc * NR);
                    });
                } else {
                    Parallel.forRange(kc, 16, (lo, hi) -> packBRows(b, pcf, lo, hi, kc, jcf, nc, bs));
                }
                int mBlocks = ceilDiv(m, MC);
                int splits = Math.max(1, Math.min(panels, ceilDiv(Parallel.THREADS * 2, mBlocks)));
                Parallel.forRange(mBlocks * splits, 1, (lo, hi) -> {
                    float[] ct = CTILE.get(), ut = UTILE.get();
                    MemorySegment as = A_SEG.get();
                    for (int u = lo; u < hi; u++) {
                        int ib = u / splits, s = u % splits;
                        int ic = ib * MC, mc = Math.min(MC, m - ic);
                        if (!directA) packA(a, ic, mc, pcf, kc, as);
                        int q0 = panels * s / splits, q1 = panels * (s + 1) / splits;
                        for (int q = q0; q < q1; q++) {
                            int col = jcf + q * NR, nr = Math.min(NR, n - col);
                            boolean inPlaceB = directB && nr == NR;
                            long bo = inPlaceB ? 4 * b.at(pcf, col) : 4L * q * kc * NR, bStep = inPlaceB ? 4L * b.cols() : 4L * NR;
                            for (int ir = 0; ir < mc; ir += MR) {
                                int mr = Math.min(MR, mc - ir);
                                MemorySegment aSeg = as;
                                long ao = 4L * ir * kc, aRow = 4, aStep = 4L * MR;
                                if (directA && mr == MR) {
                                    aSeg = a.seg();
                                    ao = 4 * a.at(ic + ir, pcf);
                                    aRow = 4L * a.cols();
                                    aStep = 4;
                                } else if (directA) { // a short last row panel: packed, so the kernel never reads past A
                                    packA(a, ic + ir, mr, pcf, kc, as);
                                    ao = 0;
                                }
                                if (aStep == 4L * MR && !inPlaceB) accumulatePacked(kc, aSeg, ao, bs, bo, ct);
                                else accumulate(kc, aSeg, ao, aRow, aStep, inPlaceB ? b.seg() : bs, bo, bStep, ct);
                                addTile(c, n, ic + ir, col, mr, nr, alpha, ct, ut, kc);
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

    /**
     * Packs op(A)[ic..ic+mc, pc..pc+kc] as MR-row panels, k-major inside a panel, zero-padded. A transposed A is read
     * one stored row (all mc values of one k) at a time, a plain one one row of kc values at a time.
     */
    private static void packA(Matrix a, int ic, int mc, int pc, int kc, MemorySegment ap) {
        float[] row = ROW.get();
        if (a.trans()) {
            for (int p = 0; p < kc; p++) {
                a.codec().readFloats(a.seg(), a.at(ic, pc + p), row, 0, mc);
                for (int ir = 0; ir < mc; ir += MR) {
                    int mr = Math.min(MR, mc - ir);
                    long at = 4L * (ir * kc + p * MR);
                    for (int r = 0; r < MR; r++) ap.set(PACKED, at + 4L * r, r < mr ? row[ir + r] : 0f);
                }
            }
            return;
        }
        for (int ir = 0; ir < mc; ir += MR) {
            int mr = Math.min(MR, mc - ir);
            long base = 4L * ir * kc;
            for (int r = 0; r < MR; r++) {
                if (r < mr) {
                    a.codec().readFloats(a.seg(), a.at(ic + ir + r, pc), row, 0, kc);
                    for (int p = 0; p < kc; p++) ap.set(PACKED, base + 4L * (p * MR + r), row[p]);
                } else {
                    for (int p = 0; p < kc; p++) ap.set(PACKED, base + 4L * (p * MR + r), 0f);
                }
            }
        }
    }

    /**
     * Packs rows {@code [p0, p1)} of op(B)[pc.., jc..jc+nc] for a non-transposed B: each row is read once, whole
     * (one bulk copy), and cut into the NR-wide panels — far fewer, larger reads than panel by panel, which matters
     * when M is small (LoRA's dA = dYB^T X) and packing B is a large share of the work.
     */
    private static void packBRows(Matrix b, int pc, int p0, int p1, int kc, int jc, int nc, MemorySegment bp) {
        float[] row = ROW_WIDE.get();
        int panels = ceilDiv(nc, NR);
        for (int p = p0; p < p1; p++) {
            b.codec().readFloats(b.seg(), b.at(pc + p, jc), row, 0, nc);
            java.util.Arrays.fill(row, nc, panels * NR, 0f);
            for (int q = 0; q < panels; q++) { // two vector stores per panel: MemorySegment.copy of 64 bytes cost ~10x more
                long at = 4L * (q * kc * NR + p * NR);
                FloatVector.fromArray(SP, row, q * NR).intoMemorySegment(bp, at, NATIVE);
                FloatVector.fromArray(SP, row, q * NR + L).intoMemorySegment(bp, at + 4L * L, NATIVE);
            }
        }
    }

    /** Packs one NR-wide panel of a plain (non-transposed) B, op(B)[pc..pc+kc, col..col+nr], zero-padded. */
    private static void packBPanel(Matrix b, int pc, int kc, int col, int nr, MemorySegment bp, int base) {
        float[] row = ROW.get();
        java.util.Arrays.fill(row, 0, NR, 0f);
        for (int p = 0; p < kc; p++) {
            b.codec().readFloats(b.seg(), b.at(pc + p, col), row, 0, nr);
            MemorySegment.copy(row, 0, bp, ValueLayout.JAVA_FLOAT, 4L * (base + p * NR), NR);
        }
    }

    /** Packs op(B)[pc..pc+kc, col..col+nr] (B stored transposed) as one NR-column panel, row-major inside, zero-padded. */
    private static void packB(Matrix b, int pc, int kc, int col, int nr, MemorySegment bp, int base) {
        float[] row = ROW.get();
        for (int j = 0; j < NR; j++) {
            if (j < nr) {
                b.codec().readFloats(b.seg(), b.at(pc, col + j), row, 0, kc);
                for (int p = 0; p < kc; p++) bp.set(PACKED, 4L * (base + p * NR + j), row[p]);
            } else {
                for (int p = 0; p < kc; p++) bp.set(PACKED, 4L * (base + p * NR + j), 0f);
            }
        }
    }

    /**
     * t[MR x NR] = A panel x B panel, the register-blocked microkernel (6 x 2 vectors of accumulators). Offsets and
     * steps in bytes: row r of A at k step p is at {@code ao + r*aRow + p*aStep} (packed: 4 and 4*MR; in place: the
     * row pitch and 4), B's NR values of step p at {@code bo + p*bStep}. The C update is another method on purpose:
     * with it in the same method the JIT compiled the k loop at 31 GFLOP/s instead of 76 (one core, in isolation).
     */
    private static void accumulate(int kc, MemorySegment ap, long ao, long aRow, long aStep, MemorySegment bp, long bo, long bStep,
                                   float[] t) {
        FloatVector c00 = FloatVector.zero(SP), c01 = FloatVector.zero(SP);
        FloatVector c10 = FloatVector.zero(SP), c11 = FloatVector.zero(SP);
        FloatVector c20 = FloatVector.zero(SP), c21 = FloatVector.zero(SP);
        FloatVector c30 = FloatVector.zero(SP), c31 = FloatVector.zero(SP);
        FloatVector c40 = FloatVector.zero(SP), c41 = FloatVector.zero(SP);
        FloatVector c50 = FloatVector.zero(SP), c51 = FloatVector.zero(SP);
        long a1 = aRow, a2 = 2 * aRow, a3 = 3 * aRow, a4 = 4 * aRow, a5 = 5 * aRow;
        for (int p = 0; p < kc; p++, ao += aStep, bo += bStep) {
            FloatVector b0 = FloatVector.fromMemorySegment(SP, bp, bo, NATIVE);
            FloatVector b1 = FloatVector.fromMemorySegment(SP, bp, bo + 4L * L, NATIVE);
            FloatVector a = FloatVector.broadcast(SP, ap.get(PACKED, ao));
            c00 = a.fma(b0, c00);
            c01 = a.fma(b1, c01);
            a = FloatVector.broadcast(SP, ap.get(PACKED, ao + a1));
            c10 = a.fma(b0, c10);
            c11 = a.fma(b1, c11);
            a = FloatVector.broadcast(SP, ap.get(PACKED, ao + a2));
            c20 = a.fma(b0, c20);
            c21 = a.fma(b1, c21);
            a = FloatVector.broadcast(SP, ap.get(PACKED, ao + a3));
            c30 = a.fma(b0, c30);
            c31 = a.fma(b1, c31);
            a = FloatVector.broadcast(SP, ap.get(PACKED, ao + a4));
            c40 = a.fma(b0, c40);
            c41 = a.fma(b1, c41);
            a = FloatVector.broadcast(SP, ap.get(PACKED, ao + a5));
            c50 = a.fma(b0, c50);
            c51 = a.fma(b1, c51);
        }
        c00.intoArray(t, 0);
        c01.intoArray(t, L);
        c10.intoArray(t, 2 * L);
        c11.intoArray(t, 3 * L);
        c20.intoArray(t, 4 * L);
        c21.intoArray(t, 5 * L);
        c30.intoArray(t, 6 * L);
        c31.intoArray(t, 7 * L);
        c40.intoArray(t, 8 * L);
        c41.intoArray(t, 9 * L);
        c50.intoArray(t, 10 * L);
        c51.intoArray(t, 11 * L);
    }

    /**
     * {@link #accumulate} for two packed panels, with the steps as constants: the same loop with the steps as
     * parameters measured 20-25% slower at 2048^3 (the JIT does not inline a loop this size to fold them), so the
     * packed case, which carries the big products, keeps its own copy.
     */
    private static void accumulatePacked(int kc, MemorySegment ap, long ao, MemorySegment bp, long bo, float[] t) {
        FloatVector c00 = FloatVector.zero(SP), c01 = FloatVector.zero(SP);
        FloatVector c10 = FloatVector.zero(SP), c11 = FloatVector.zero(SP);
        FloatVector c20 = FloatVector.zero(SP), c21 = FloatVector.zero(SP);
        FloatVector c30 = FloatVector.zero(SP), c31 = FloatVector.zero(SP);
        FloatVector c40 = FloatVector.zero(SP), c41 = FloatVector.zero(SP);
        FloatVector c50 = FloatVector.zero(SP), c51 = FloatVector.zero(SP);
        for (int p = 0; p < kc; p++, ao += 4 * MR, bo += 4 * NR) {
            FloatVector b0 = FloatVector.fromMemorySegment(SP, bp, bo, NATIVE);
            FloatVector b1 = FloatVector.fromMemorySegment(SP, bp, bo + 4L * L, NATIVE);
            FloatVector a = FloatVector.broadcast(SP, ap.get(PACKED, ao));
            c00 = a.fma(b0, c00);
            c01 = a.fma(b1, c01);
            a = FloatVector.broadcast(SP, ap.get(PACKED, ao + 4));
            c10 = a.fma(b0, c10);
            c11 = a.fma(b1, c11);
            a = FloatVector.broadcast(SP, ap.get(PACKED, ao + 8));
            c20 = a.fma(b0, c20);
            c21 = a.fma(b1, c21);
            a = FloatVector.broadcast(SP, ap.get(PACKED, ao + 12));
            c30 = a.fma(b0, c30);
            c31 = a.fma(b1, c31);
            a = FloatVector.broadcast(SP, ap.get(PACKED, ao + 16));
            c40 = a.fma(b0, c40);
            c41 = a.fma(b1, c41);
            a = FloatVector.broadcast(SP, ap.get(PACKED, ao + 20));
            c50 = a.fma(b0, c50);
            c51 = a.fma(b1, c51);
        }
        c00.intoArray(t, 0);
        c01.intoArray(t, L);
        c10.intoArray(t, 2 * L);
        c11.intoArray(t, 3 * L);
        c20.intoArray(t, 4 * L);
        c21.intoArray(t, 5 * L);
        c30.intoArray(t, 6 * L);
        c31.intoArray(t, 7 * L);
        c40.intoArray(t, 8 * L);
        c41.intoArray(t, 9 * L);
        c50.intoArray(t, 10 * L);
        c51.intoArray(t, 11 * L);
    }

    /**
     * C += alpha * t through a heap tile: rows are bulk-copied in and out (memcpy), the arithmetic runs on arrays.
     * Vector loads/stores straight from the native C segment measured half the speed.
     */
    private static void addTile(MemorySegment c, int ldc, int row, int col, int mr, int nr, float alpha, float[] t, float[] u,
                                int kc) {
        if (kc < 128 && nr == NR) { // short k (LoRA's rank-16 products): the update is most of the work; vectors on C
            // directly measured 61 vs 29-31 GFLOP/s there (kc = 64), while at kc = 256 the heap tile was steadier
            FloatVector al = FloatVector.broadcast(SP, alpha);
            for (int r = 0; r < mr; r++) {
                long off = ((long) (row + r) * ldc + col) * 4;
                FloatVector.fromArray(SP, t, r * NR).fma(al, FloatVector.fromMemorySegment(SP, c, off, NATIVE)).intoMemorySegment(c, off, NATIVE);
                FloatVector.fromArray(SP, t, r * NR + L).fma(al, FloatVector.fromMemorySegment(SP, c, off + 4L * L, NATIVE))
                        .intoMemorySegment(c, off + 4L * L, NATIVE);
            }
            return;
        }
        for (int r = 0; r < mr; r++) MemorySegment.copy(c, ElementCodec.FLOAT, ((long) (row + r) * ldc + col) * 4, u, r * NR, nr);
        FloatVector av = FloatVector.broadcast(SP, alpha);
        for (int i = 0; i < MR * NR; i += L) FloatVector.fromArray(SP, t, i).fma(av, FloatVector.fromArray(SP, u, i)).intoArray(u, i);
        for (int r = 0; r < mr; r++) MemorySegment.copy(u, r * NR, c, ElementCodec.FLOAT, ((long) (row + r) * ldc + col) * 4, nr);
    }
}
