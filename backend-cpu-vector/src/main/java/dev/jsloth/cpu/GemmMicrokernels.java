package dev.jsloth.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * The register-blocked microkernels of {@link GemmF32}: each multiplies a panel of A (a few rows, k-major) by a packed B
 * panel ({@link #NR} columns: two vectors) over one K block, with one vector accumulator per row and vector of NR, and
 * hands the tile to {@link #updateTile} (or stores it itself). One kernel does the work; the others exist where
 * measurement showed the main one losing (each one's Javadoc has the numbers):
 * <table>
 * <caption>the kernels, by where they run</caption>
 * <tr><th>kernel</th><th>tile</th><th>runs</th></tr>
 * <tr><td>{@link #accumulatePackedWide}</td><td>12 x 2 vectors</td><td>the main kernel where vectors are 512 bits
 * (AVX-512: 32 registers), with its read-ahead of the next B panel</td></tr>
 * <tr><td>{@link #accumulatePackedFive}</td><td>5 x 2</td><td>the main kernel where vectors are 256 bits (AVX2: 16
 * registers; 6 rows spill one accumulator)</td></tr>
 * <tr><td>{@link #accumulatePackedFour}</td><td>4 x 2</td><td>AVX2: the first panels of a block whose rows are not a
 * multiple of 5 (16 rows as 4 x 4, not 5 + 5 + 5 + 1 padded to 20)</td></tr>
 * <tr><td>{@link #accumulatePacked}</td><td>6 x 2</td><td>AVX-512: a packed block's last panel of at most 6 rows; a
 * short last panel of an A read in place</td></tr>
 * <tr><td>{@link #accumulate}</td><td>6 x 2</td><td>A read in place (any row pitch) or short k (under
 * {@link GemmF32#SLICED_MIN_K}), with a low-rank pair</td></tr>
 * <tr><td>{@link #storeShort}</td><td>6 x 2</td><td>short k, C overwritten: the tile stored straight from the
 * registers (LoRA's expansions)</td></tr>
 * <tr><td>{@link #accumulateNarrow}</td><td>12 x 1</td><td>AVX-512, N within one vector, A in place (LoRA's
 * {@code X A^T})</td></tr>
 * </table>
 * Java has no templates, so each row count is its own method: a loop over an array of accumulators keeps them in
 * memory, not registers. All of them sum in the same order, so a product has the same bits whichever kernel runs it.
 */
final class GemmMicrokernels {
    static final VectorSpecies<Float> SP = FloatVector.SPECIES_PREFERRED;
    static final int L = SP.length();
    /** Rows of the microkernel that also serves the short and in-place cases ({@link #accumulate}). */
    static final int HALF = 6;
    /** Rows of {@link #accumulatePackedFive}, the packed kernel where vectors are narrower than 512 bits. */
    static final int FIVE_ROWS = 5;
    /** Rows of {@link #accumulatePackedFour}: a block's first panels where its rows are not a multiple of 5 ({@link GemmPacking#panelHeight}). */
    static final int FOUR_ROWS = 4;
    /**
     * Rows of a packed A panel on the main path (deep k, packed A) and of A's row panels where A is read in place and N
     * fits one vector ({@link #accumulateNarrow}, a last panel of any height too); 6 in the other cases, and for a packed
     * block's last panel of at most 6 rows where MR is 12; 4 for a last block's first panels where MR is 5
     * ({@link GemmPacking#panelHeight}). With 512-bit vectors
     * (AVX-512: 32 vector registers) the packed kernel takes 12 rows, 24 accumulators ({@link #accumulatePackedWide}):
     * each of B's vector loads then feeds 12 FMAs instead of 6, and those loads (B's panel comes from L2) were where
     * the 6-row kernel stalled (perf: the samples sat on them). 2048^3, one JVM, old and new alternating (ABBA, medians
     * of 9 rounds of per-round ratios): 1.05-1.43x on 2 threads over five runs (the gain moves with this VM's state),
     * 1.05-1.26x on 1; `bench --gemm` with the two jars alternating, 2 threads: 176-221 GFLOP/s against 142-172. With
     * 256-bit vectors (AVX2: 16 registers) 24 accumulators spill, and 12 rows ran at 0.63-0.86x of 6 (checked with
     * -XX:UseAVX=2). With 256-bit vectors the packed kernel takes 5 rows ({@link #accumulatePackedFive}): C2 gives the
     * 6-row kernel's 12 accumulators, 2 B vectors and its broadcasts 17 registers, one accumulator then lives on the
     * stack (a load, an FMA and a store a k step: a chain through memory), and the kernel ran at 32-33 GFLOP/s on one
     * AMD Zen core where the same loop in C with intrinsics runs 38-39 (the core's FMA peak); 5 rows run 37.5-38.5.
     */
    static final int MR = L >= 16 ? 2 * HALF : FIVE_ROWS;
    /** The most rows of any panel: buffers sized by it hold a tile or panel of either height. */
    static final int ROWS_MAX = Math.max(MR, HALF);
    static final int NR = 2 * L;

    /**
     * Bytes the wide kernel's read-ahead moves on a k step ({@link #accumulatePackedWide}): a constant, so that C2 drops
     * the load's bounds check. A call then reads {@code 16 kc} bytes ahead, the share of each of a 96-row stripe's 8 row
     * panels; a shorter stripe's panels leave part of the next B panel to the kernel's own loads.
     */
    static final long AHEAD_STEP = 16;

    static final ValueLayout.OfFloat PACKED = ValueLayout.JAVA_FLOAT_UNALIGNED;
    static final ByteOrder NATIVE = ByteOrder.nativeOrder();

    private GemmMicrokernels() {
    }

    /**
     * t[6 x NR] = 6 rows of A x B panel, the register-blocked microkernel (6 x 2 vectors of accumulators) of the
     * short-k and in-place cases (its packed twins {@link #accumulatePacked} and {@link #accumulatePackedFive} take deep
     * k), after
     * {@code lowK} steps of a low-rank pair (its A at {@code lap}/{@code lao}, packed as A is, its B panel at
     * {@code lbp}/{@code lbo}; lowK 0: none). Offsets and steps in bytes: row r of A at k step p is at
     * {@code ao + r*aRow + p*aStep} (packed: 4 and 4*HALF; in place: the row pitch and 4), B's NR values of step p at
     * {@code bo + p*4*NR} (B is always packed). The C update is another
     * method on purpose: with it in the same method the JIT compiled the k loop at 31 GFLOP/s instead of 76 (one core,
     * in isolation).
     */
    static void accumulate(int lowK, MemorySegment lap, long lao, MemorySegment lbp, long lbo,
                                   int kc, MemorySegment ap, long ao, long aRow, long aStep, MemorySegment bp, long bo, float[] t) {
        FloatVector c00 = FloatVector.zero(SP), c01 = FloatVector.zero(SP);
        FloatVector c10 = FloatVector.zero(SP), c11 = FloatVector.zero(SP);
        FloatVector c20 = FloatVector.zero(SP), c21 = FloatVector.zero(SP);
        FloatVector c30 = FloatVector.zero(SP), c31 = FloatVector.zero(SP);
        FloatVector c40 = FloatVector.zero(SP), c41 = FloatVector.zero(SP);
        FloatVector c50 = FloatVector.zero(SP), c51 = FloatVector.zero(SP);
        long a1 = aRow, a2 = 2 * aRow, a3 = 3 * aRow, a4 = 4 * aRow, a5 = 5 * aRow;
        for (int part = lowK > 0 ? 0 : 1; part < 2; part++) { // the low-rank pair's steps (packed as A is), then A's and B's
            int depth = part == 0 ? lowK : kc;
            MemorySegment pa = part == 0 ? lap : ap, pb = part == 0 ? lbp : bp;
            long ak = part == 0 ? lao : ao, bk = part == 0 ? lbo : bo;
            for (int p = 0; p < depth; p++, ak += aStep, bk += 4L * NR) {
                FloatVector b0 = FloatVector.fromMemorySegment(SP, pb, bk, NATIVE);
                FloatVector b1 = FloatVector.fromMemorySegment(SP, pb, bk + 4L * L, NATIVE);
                FloatVector a = FloatVector.broadcast(SP, pa.get(PACKED, ak));
                c00 = a.fma(b0, c00);
                c01 = a.fma(b1, c01);
                a = FloatVector.broadcast(SP, pa.get(PACKED, ak + a1));
                c10 = a.fma(b0, c10);
                c11 = a.fma(b1, c11);
                a = FloatVector.broadcast(SP, pa.get(PACKED, ak + a2));
                c20 = a.fma(b0, c20);
                c21 = a.fma(b1, c21);
                a = FloatVector.broadcast(SP, pa.get(PACKED, ak + a3));
                c30 = a.fma(b0, c30);
                c31 = a.fma(b1, c31);
                a = FloatVector.broadcast(SP, pa.get(PACKED, ak + a4));
                c40 = a.fma(b0, c40);
                c41 = a.fma(b1, c41);
                a = FloatVector.broadcast(SP, pa.get(PACKED, ak + a5));
                c50 = a.fma(b0, c50);
                c51 = a.fma(b1, c51);
            }
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
     * {@link #accumulate} for a short k block (under {@link GemmF32#SLICED_MIN_K}) of a packed 6-row A panel with no low-rank
     * pair, for a product that overwrites C (every LoRA expansion): A read from the heap block ({@code as} from
     * {@code asAt}; broadcasts that C2 parses cheaply), and the whole 6 x NR tile stored as {@code alpha * tile} into C at
     * byte offset {@code co} (rows {@code ldc} bytes apart) straight from the registers. At such depths the tile's trip
     * through the heap and {@link #updateTile} was a large share of a call. Same sums in the same order as
     * {@link #accumulate} (the same bits). One JVM, against the session-23 code (plain kernel, then updateTile), batches of
     * ~20 products, medians of 9-11 rounds, 2 threads: 4096 x 2048 x 16 90.7 against 63.4 GFLOP/s, 1024 x 4096 x 16 90.7
     * against 61.3. A first form that also added into C, 12 loads and 24 stores on C spelled out and A read from the
     * segment, took C2 past its inlining cutoff in {@code bench --gemm} (the Vector API's Java fallbacks: 0.7 GFLOP/s).
     */
    static void storeShort(int kc, float[] as, int asAt, MemorySegment bp, long bo, MemorySegment c, long co, long ldc,
                                   float alpha) {
        FloatVector c00 = FloatVector.zero(SP), c01 = FloatVector.zero(SP);
        FloatVector c10 = FloatVector.zero(SP), c11 = FloatVector.zero(SP);
        FloatVector c20 = FloatVector.zero(SP), c21 = FloatVector.zero(SP);
        FloatVector c30 = FloatVector.zero(SP), c31 = FloatVector.zero(SP);
        FloatVector c40 = FloatVector.zero(SP), c41 = FloatVector.zero(SP);
        FloatVector c50 = FloatVector.zero(SP), c51 = FloatVector.zero(SP);
        for (int p = 0; p < kc; p++) {
            int ak = asAt + HALF * p;
            long bk = bo + 4L * NR * p;
            FloatVector b0 = FloatVector.fromMemorySegment(SP, bp, bk, NATIVE);
            FloatVector b1 = FloatVector.fromMemorySegment(SP, bp, bk + 4L * L, NATIVE);
            FloatVector a = FloatVector.broadcast(SP, as[ak]);
            c00 = a.fma(b0, c00);
            c01 = a.fma(b1, c01);
            a = FloatVector.broadcast(SP, as[ak + 1]);
            c10 = a.fma(b0, c10);
            c11 = a.fma(b1, c11);
            a = FloatVector.broadcast(SP, as[ak + 2]);
            c20 = a.fma(b0, c20);
            c21 = a.fma(b1, c21);
            a = FloatVector.broadcast(SP, as[ak + 3]);
            c30 = a.fma(b0, c30);
            c31 = a.fma(b1, c31);
            a = FloatVector.broadcast(SP, as[ak + 4]);
            c40 = a.fma(b0, c40);
            c41 = a.fma(b1, c41);
            a = FloatVector.broadcast(SP, as[ak + 5]);
            c50 = a.fma(b0, c50);
            c51 = a.fma(b1, c51);
        }
        FloatVector al = FloatVector.broadcast(SP, alpha);
        long h = 4L * L;
        c00.mul(al).intoMemorySegment(c, co, NATIVE);
        c01.mul(al).intoMemorySegment(c, co + h, NATIVE);
        c10.mul(al).intoMemorySegment(c, co += ldc, NATIVE);
        c11.mul(al).intoMemorySegment(c, co + h, NATIVE);
        c20.mul(al).intoMemorySegment(c, co += ldc, NATIVE);
        c21.mul(al).intoMemorySegment(c, co + h, NATIVE);
        c30.mul(al).intoMemorySegment(c, co += ldc, NATIVE);
        c31.mul(al).intoMemorySegment(c, co + h, NATIVE);
        c40.mul(al).intoMemorySegment(c, co += ldc, NATIVE);
        c41.mul(al).intoMemorySegment(c, co + h, NATIVE);
        c50.mul(al).intoMemorySegment(c, co += ldc, NATIVE);
        c51.mul(al).intoMemorySegment(c, co + h, NATIVE);
    }

    /**
     * 12 rows by one vector of B (packed a vector wide, {@link GemmPacking#packBNarrow}: L floats a k step from {@code bo}), A read
     * where it is (plain F32, rows {@code aRow} bytes apart from byte {@code ao}; a short last panel's rows from {@code rows} on read its first row again, and their sums are not
     * stored), for products whose N fits one vector (LoRA's {@code X A^T}, N = rank 16), where {@link #accumulate}'s
     * second column vector would be all padding: every FMA here is useful, and each k step loads one B vector for 12 A
     * values. Same sums in the same order as {@link #accumulate} (bit-identical). Only with 512-bit vectors, where
     * {@link #MR} is 12.
     * <p>
     * Every read is of the operand segments themselves, at each row's offset plus {@code 4 p}. The form before this one
     * read each row as a slice made before the loop ({@code asSlice}: 13 slices a call), which C2 compiled two ways from
     * one JVM to the next: in about half of the JVMs that also called OpenBLAS through the FFM linker
     * ({@code GemmVsOpenBlas}), the slices' making was judged a low-frequency call site (not inlined), and the loop ran
     * with every segment access a call ({@code checkValidStateRaw}, {@code isAlignedForElement} in the profile): 4096 x 16
     * x 2048 at 20-35 GFLOP/s against 150-220, 512 x 16 x 1408 at 25-32 against 190 (Zen 5, 2 threads, the old and the
     * session 42 code alike). This form ran normally in 20 of 20 such JVMs (4096 x 16 x 2048: 95-195 GFLOP/s, ratios to
     * OpenBLAS 0.80-1.49 on this noisy VM, against 116-213 for the slices' fast case; 512 x 16 x 1408: 171-179 against 192).
     */
    static void accumulateNarrow(int kc, MemorySegment ap, long ao, long aRow, int rows, MemorySegment bp, long bo, float[] t) {
        // row r's offset: its own, or (past the panel's rows) the first row's
        long o0 = ao, o1 = rowAt(ao, aRow, 1, rows), o2 = rowAt(ao, aRow, 2, rows), o3 = rowAt(ao, aRow, 3, rows);
        long o4 = rowAt(ao, aRow, 4, rows), o5 = rowAt(ao, aRow, 5, rows), o6 = rowAt(ao, aRow, 6, rows), o7 = rowAt(ao, aRow, 7, rows);
        long o8 = rowAt(ao, aRow, 8, rows), o9 = rowAt(ao, aRow, 9, rows), o10 = rowAt(ao, aRow, 10, rows), o11 = rowAt(ao, aRow, 11, rows);
        FloatVector c0 = FloatVector.zero(SP), c1 = FloatVector.zero(SP), c2 = FloatVector.zero(SP), c3 = FloatVector.zero(SP);
        FloatVector c4 = FloatVector.zero(SP), c5 = FloatVector.zero(SP), c6 = FloatVector.zero(SP), c7 = FloatVector.zero(SP);
        FloatVector c8 = FloatVector.zero(SP), c9 = FloatVector.zero(SP), c10 = FloatVector.zero(SP), c11 = FloatVector.zero(SP);
        for (int p = 0; p < kc; p++) {
            long ak = 4L * p;
            FloatVector bv = FloatVector.fromMemorySegment(SP, bp, bo + 4L * L * p, NATIVE);
            c0 = FloatVector.broadcast(SP, ap.get(PACKED, o0 + ak)).fma(bv, c0);
            c1 = FloatVector.broadcast(SP, ap.get(PACKED, o1 + ak)).fma(bv, c1);
            c2 = FloatVector.broadcast(SP, ap.get(PACKED, o2 + ak)).fma(bv, c2);
            c3 = FloatVector.broadcast(SP, ap.get(PACKED, o3 + ak)).fma(bv, c3);
            c4 = FloatVector.broadcast(SP, ap.get(PACKED, o4 + ak)).fma(bv, c4);
            c5 = FloatVector.broadcast(SP, ap.get(PACKED, o5 + ak)).fma(bv, c5);
            c6 = FloatVector.broadcast(SP, ap.get(PACKED, o6 + ak)).fma(bv, c6);
            c7 = FloatVector.broadcast(SP, ap.get(PACKED, o7 + ak)).fma(bv, c7);
            c8 = FloatVector.broadcast(SP, ap.get(PACKED, o8 + ak)).fma(bv, c8);
            c9 = FloatVector.broadcast(SP, ap.get(PACKED, o9 + ak)).fma(bv, c9);
            c10 = FloatVector.broadcast(SP, ap.get(PACKED, o10 + ak)).fma(bv, c10);
            c11 = FloatVector.broadcast(SP, ap.get(PACKED, o11 + ak)).fma(bv, c11);
        }
        c0.intoArray(t, 0);
        c1.intoArray(t, NR);
        c2.intoArray(t, 2 * NR);
        c3.intoArray(t, 3 * NR);
        c4.intoArray(t, 4 * NR);
        c5.intoArray(t, 5 * NR);
        c6.intoArray(t, 6 * NR);
        c7.intoArray(t, 7 * NR);
        c8.intoArray(t, 8 * NR);
        c9.intoArray(t, 9 * NR);
        c10.intoArray(t, 10 * NR);
        c11.intoArray(t, 11 * NR);
    }

    /** The offset of row r of a panel whose rows start at ao, aRow bytes apart; row 0's where r is past rows. */
    private static long rowAt(long ao, long aRow, int r, int rows) {
        return r < rows ? ao + r * aRow : ao;
    }

    /**
     * {@link #accumulate} for two packed panels (A's of 6 rows), with the steps as constants and the panels indexed from
     * the int loop counter (B's as a slice, A's in the heap block from {@code asAt}), so the JIT drops the per-access
     * bounds checks from the loop: 93 GFLOP/s on one core in isolation (OpenBLAS: 93-95 here), against 73 for the same
     * loop stepping long offsets and 55 with the steps as parameters. The packed case (deep k on 6-row panels: where vectors are
     * 512 bits a packed block's last panel, narrower a last block's first ones) therefore keeps its own copy. The caller makes B's slice once per
     * B panel (a slice is an object: made per call, at 2048^3 they took 3.6% of the samples; hoisted, one thread ran
     * 1.046 / 1.049 times as fast, medians of 12 alternating rounds in one JVM).
     */
    static void accumulatePacked(int lowK, float[] lowA, int lowAt, MemorySegment lowB, int kc, float[] as, int asAt, MemorySegment bs,
                                         float[] t) {
        FloatVector c00 = FloatVector.zero(SP), c01 = FloatVector.zero(SP);
        FloatVector c10 = FloatVector.zero(SP), c11 = FloatVector.zero(SP);
        FloatVector c20 = FloatVector.zero(SP), c21 = FloatVector.zero(SP);
        FloatVector c30 = FloatVector.zero(SP), c31 = FloatVector.zero(SP);
        FloatVector c40 = FloatVector.zero(SP), c41 = FloatVector.zero(SP);
        FloatVector c50 = FloatVector.zero(SP), c51 = FloatVector.zero(SP);
        for (int part = lowK > 0 ? 0 : 1; part < 2; part++) { // the low-rank pair's steps, then A's and B's
            int depth = part == 0 ? lowK : kc;
            float[] pa = part == 0 ? lowA : as;
            int pat = part == 0 ? lowAt : asAt;
            MemorySegment pb = part == 0 ? lowB : bs;
            for (int p = 0; p < depth; p++) {
                int ak = pat + HALF * p;
                long bk = 4L * NR * p;
                FloatVector b0 = FloatVector.fromMemorySegment(SP, pb, bk, NATIVE);
                FloatVector b1 = FloatVector.fromMemorySegment(SP, pb, bk + 4L * L, NATIVE);
                FloatVector a = FloatVector.broadcast(SP, pa[ak]);
                c00 = a.fma(b0, c00);
                c01 = a.fma(b1, c01);
                a = FloatVector.broadcast(SP, pa[ak + 1]);
                c10 = a.fma(b0, c10);
                c11 = a.fma(b1, c11);
                a = FloatVector.broadcast(SP, pa[ak + 2]);
                c20 = a.fma(b0, c20);
                c21 = a.fma(b1, c21);
                a = FloatVector.broadcast(SP, pa[ak + 3]);
                c30 = a.fma(b0, c30);
                c31 = a.fma(b1, c31);
                a = FloatVector.broadcast(SP, pa[ak + 4]);
                c40 = a.fma(b0, c40);
                c41 = a.fma(b1, c41);
                a = FloatVector.broadcast(SP, pa[ak + 5]);
                c50 = a.fma(b0, c50);
                c51 = a.fma(b1, c51);
            }
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
     * {@link #accumulatePacked} for a 5-row panel ({@link #MR} where vectors are narrower than 512 bits; measured with
     * 256-bit vectors, AVX2's 16 vector registers): 10
     * accumulators, 2 B vectors and the broadcasts fit, where the 6-row kernel's 12 accumulators leave one on the stack.
     */
    static void accumulatePackedFive(int lowK, float[] lowA, int lowAt, MemorySegment lowB, int kc, float[] as, int asAt,
                                             MemorySegment bs, float[] t) {
        FloatVector c00 = FloatVector.zero(SP), c01 = FloatVector.zero(SP);
        FloatVector c10 = FloatVector.zero(SP), c11 = FloatVector.zero(SP);
        FloatVector c20 = FloatVector.zero(SP), c21 = FloatVector.zero(SP);
        FloatVector c30 = FloatVector.zero(SP), c31 = FloatVector.zero(SP);
        FloatVector c40 = FloatVector.zero(SP), c41 = FloatVector.zero(SP);
        for (int part = lowK > 0 ? 0 : 1; part < 2; part++) { // the low-rank pair's steps, then A's and B's
            int depth = part == 0 ? lowK : kc;
            float[] pa = part == 0 ? lowA : as;
            int pat = part == 0 ? lowAt : asAt;
            MemorySegment pb = part == 0 ? lowB : bs;
            for (int p = 0; p < depth; p++) {
                int ak = pat + FIVE_ROWS * p;
                long bk = 4L * NR * p;
                FloatVector b0 = FloatVector.fromMemorySegment(SP, pb, bk, NATIVE);
                FloatVector b1 = FloatVector.fromMemorySegment(SP, pb, bk + 4L * L, NATIVE);
                FloatVector a = FloatVector.broadcast(SP, pa[ak]);
                c00 = a.fma(b0, c00);
                c01 = a.fma(b1, c01);
                a = FloatVector.broadcast(SP, pa[ak + 1]);
                c10 = a.fma(b0, c10);
                c11 = a.fma(b1, c11);
                a = FloatVector.broadcast(SP, pa[ak + 2]);
                c20 = a.fma(b0, c20);
                c21 = a.fma(b1, c21);
                a = FloatVector.broadcast(SP, pa[ak + 3]);
                c30 = a.fma(b0, c30);
                c31 = a.fma(b1, c31);
                a = FloatVector.broadcast(SP, pa[ak + 4]);
                c40 = a.fma(b0, c40);
                c41 = a.fma(b1, c41);
            }
        }
        c00.intoArray(t, 0);
        c01.intoArray(t, 1 * L);
        c10.intoArray(t, 2 * L);
        c11.intoArray(t, 3 * L);
        c20.intoArray(t, 4 * L);
        c21.intoArray(t, 5 * L);
        c30.intoArray(t, 6 * L);
        c31.intoArray(t, 7 * L);
        c40.intoArray(t, 8 * L);
        c41.intoArray(t, 9 * L);
    }

    /** {@link #accumulatePackedFive} for a 4-row panel (a last block's first panels where MR is 5: {@link GemmPacking#panelHeight}). */
    static void accumulatePackedFour(int lowK, float[] lowA, int lowAt, MemorySegment lowB, int kc, float[] as, int asAt,
                                             MemorySegment bs, float[] t) {
        FloatVector c00 = FloatVector.zero(SP), c01 = FloatVector.zero(SP);
        FloatVector c10 = FloatVector.zero(SP), c11 = FloatVector.zero(SP);
        FloatVector c20 = FloatVector.zero(SP), c21 = FloatVector.zero(SP);
        FloatVector c30 = FloatVector.zero(SP), c31 = FloatVector.zero(SP);
        for (int part = lowK > 0 ? 0 : 1; part < 2; part++) { // the low-rank pair's steps, then A's and B's
            int depth = part == 0 ? lowK : kc;
            float[] pa = part == 0 ? lowA : as;
            int pat = part == 0 ? lowAt : asAt;
            MemorySegment pb = part == 0 ? lowB : bs;
            for (int p = 0; p < depth; p++) {
                int ak = pat + FOUR_ROWS * p;
                long bk = 4L * NR * p;
                FloatVector b0 = FloatVector.fromMemorySegment(SP, pb, bk, NATIVE);
                FloatVector b1 = FloatVector.fromMemorySegment(SP, pb, bk + 4L * L, NATIVE);
                FloatVector a = FloatVector.broadcast(SP, pa[ak]);
                c00 = a.fma(b0, c00);
                c01 = a.fma(b1, c01);
                a = FloatVector.broadcast(SP, pa[ak + 1]);
                c10 = a.fma(b0, c10);
                c11 = a.fma(b1, c11);
                a = FloatVector.broadcast(SP, pa[ak + 2]);
                c20 = a.fma(b0, c20);
                c21 = a.fma(b1, c21);
                a = FloatVector.broadcast(SP, pa[ak + 3]);
                c30 = a.fma(b0, c30);
                c31 = a.fma(b1, c31);
            }
        }
        c00.intoArray(t, 0);
        c01.intoArray(t, 1 * L);
        c10.intoArray(t, 2 * L);
        c11.intoArray(t, 3 * L);
        c20.intoArray(t, 4 * L);
        c21.intoArray(t, 5 * L);
        c30.intoArray(t, 6 * L);
        c31.intoArray(t, 7 * L);
    }

    /**
     * {@link #accumulatePacked} for a 12-row panel ({@link #MR} where vectors are 512 bits): 24 accumulators, so each
     * pair of B vectors loaded feeds 24 FMAs. Without spills on AVX-512 (checked in the JIT's code: 24 FMAs, 12 broadcasts
     * from memory and 2 loads a k step; the read-ahead below adds a load and an add, 28 of the 32 vector registers live,
     * not checked for spills since).
     * <p>
     * A is read from the heap ({@code as} from {@code asAt}, the pair's {@code lowA} from {@code lowAt}): with A read
     * from a MemorySegment (12 {@code get}s a k step, ~420 IR nodes each as C2 parses them), C2 parsed this method to
     * 17,600 live nodes against its inlining cutoff of 18,000 (NodeCountInliningCutoff, LogCompilation's parse_done), and
     * one more segment read in the loop was enough to leave a call in it: every accumulator boxed, 2048^3 at 0.27x. From
     * float[] it parses to 10,300 nodes and runs as fast (one JVM, old and new alternating, medians of 11 rounds: 2048^3
     * 1.07x on 2 threads, 1.02x on 1; the llama-25m step at 2 x 256 unchanged), with the same bits.
     * <p>
     * Each k step also loads one vector of {@code ahead} at {@code aheadAt + AHEAD_STEP * p} (the next B panel's share
     * of this call where {@link GemmF32#readsAhead}, else this call's own panel again; the thread's A buffer where a low-rank
     * pair is too deep for the panel), summed into a vector stored past the tile so that the loads stay: one load a k
     * step, its line moving on every 4 steps, brings the panel into L2 while the FMAs run. The step is a constant so
     * that C2 can drop the load's bounds check (with the step a parameter, the JIT's loop kept a multiply, a compare
     * and a branch for it and five stack reloads: 62 instructions a k step against 55 now). A branch or a second kernel
     * for the products that need no read-ahead was what session 21 found fragile (a branch compiled as never taken by
     * the training step, then trapping; an int read sharing a polluted type profile): this is the same vector load as
     * B's, every time.
     */
    static void accumulatePackedWide(int lowK, float[] lowA, int lowAt, MemorySegment lowB, int kc, float[] as, int asAt, MemorySegment bs,
                                             MemorySegment ahead, long aheadAt, float[] t) {
        FloatVector read = FloatVector.zero(SP); // the loads of the read-ahead, summed so that they are not dead code
        FloatVector c00 = FloatVector.zero(SP), c01 = FloatVector.zero(SP);
        FloatVector c10 = FloatVector.zero(SP), c11 = FloatVector.zero(SP);
        FloatVector c20 = FloatVector.zero(SP), c21 = FloatVector.zero(SP);
        FloatVector c30 = FloatVector.zero(SP), c31 = FloatVector.zero(SP);
        FloatVector c40 = FloatVector.zero(SP), c41 = FloatVector.zero(SP);
        FloatVector c50 = FloatVector.zero(SP), c51 = FloatVector.zero(SP);
        FloatVector c60 = FloatVector.zero(SP), c61 = FloatVector.zero(SP);
        FloatVector c70 = FloatVector.zero(SP), c71 = FloatVector.zero(SP);
        FloatVector c80 = FloatVector.zero(SP), c81 = FloatVector.zero(SP);
        FloatVector c90 = FloatVector.zero(SP), c91 = FloatVector.zero(SP);
        FloatVector c100 = FloatVector.zero(SP), c101 = FloatVector.zero(SP);
        FloatVector c110 = FloatVector.zero(SP), c111 = FloatVector.zero(SP);
        for (int part = lowK > 0 ? 0 : 1; part < 2; part++) { // the low-rank pair's steps, then A's and B's
            int depth = part == 0 ? lowK : kc;
            float[] pa = part == 0 ? lowA : as;
            int pat = part == 0 ? lowAt : asAt;
            MemorySegment pb = part == 0 ? lowB : bs;
            for (int p = 0; p < depth; p++) {
                int ak = pat + MR * p;
                long bk = 4L * NR * p;
                FloatVector b0 = FloatVector.fromMemorySegment(SP, pb, bk, NATIVE);
                FloatVector b1 = FloatVector.fromMemorySegment(SP, pb, bk + 4L * L, NATIVE);
                // the loaded vector is the receiver: its class is known where it is parsed, the loop's sum's is not
                // (read.add(...) showed as a virtual call in a compile that had no type profile at this call site)
                read = FloatVector.fromMemorySegment(SP, ahead, aheadAt + AHEAD_STEP * p, NATIVE).add(read);
                FloatVector a;
                a = FloatVector.broadcast(SP, pa[ak + 0]);
                c00 = a.fma(b0, c00);
                c01 = a.fma(b1, c01);
                a = FloatVector.broadcast(SP, pa[ak + 1]);
                c10 = a.fma(b0, c10);
                c11 = a.fma(b1, c11);
                a = FloatVector.broadcast(SP, pa[ak + 2]);
                c20 = a.fma(b0, c20);
                c21 = a.fma(b1, c21);
                a = FloatVector.broadcast(SP, pa[ak + 3]);
                c30 = a.fma(b0, c30);
                c31 = a.fma(b1, c31);
                a = FloatVector.broadcast(SP, pa[ak + 4]);
                c40 = a.fma(b0, c40);
                c41 = a.fma(b1, c41);
                a = FloatVector.broadcast(SP, pa[ak + 5]);
                c50 = a.fma(b0, c50);
                c51 = a.fma(b1, c51);
                a = FloatVector.broadcast(SP, pa[ak + 6]);
                c60 = a.fma(b0, c60);
                c61 = a.fma(b1, c61);
                a = FloatVector.broadcast(SP, pa[ak + 7]);
                c70 = a.fma(b0, c70);
                c71 = a.fma(b1, c71);
                a = FloatVector.broadcast(SP, pa[ak + 8]);
                c80 = a.fma(b0, c80);
                c81 = a.fma(b1, c81);
                a = FloatVector.broadcast(SP, pa[ak + 9]);
                c90 = a.fma(b0, c90);
                c91 = a.fma(b1, c91);
                a = FloatVector.broadcast(SP, pa[ak + 10]);
                c100 = a.fma(b0, c100);
                c101 = a.fma(b1, c101);
                a = FloatVector.broadcast(SP, pa[ak + 11]);
                c110 = a.fma(b0, c110);
                c111 = a.fma(b1, c111);
            }
        }
        c00.intoArray(t, 0 * L);
        c01.intoArray(t, 1 * L);
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
        c60.intoArray(t, 12 * L);
        c61.intoArray(t, 13 * L);
        c70.intoArray(t, 14 * L);
        c71.intoArray(t, 15 * L);
        c80.intoArray(t, 16 * L);
        c81.intoArray(t, 17 * L);
        c90.intoArray(t, 18 * L);
        c91.intoArray(t, 19 * L);
        c100.intoArray(t, 20 * L);
        c101.intoArray(t, 21 * L);
        c110.intoArray(t, 22 * L);
        c111.intoArray(t, 23 * L);
        read.intoArray(t, 24 * L); // past the tile: never read
    }

    /**
     * C = alpha * t ({@code store}: the first k block of an overwriting product) or C += alpha * t. A full tile is
     * updated with vector loads/stores on C (now an L2-resident block: 8% faster at 2048^3 than a heap copy); a
     * partial one goes through a heap tile, rows bulk-copied in and out.
     */
    static void updateTile(MemorySegment c, int ldc, int row, int col, int mr, int nr, float alpha, boolean store,
                                   float[] t, float[] u) {
        FloatVector al = FloatVector.broadcast(SP, alpha);
        if (nr == NR) {
            for (int r = 0; r < mr; r++) {
                long off = ((long) (row + r) * ldc + col) * 4;
                FloatVector t0 = FloatVector.fromArray(SP, t, r * NR), t1 = FloatVector.fromArray(SP, t, r * NR + L);
                if (store) {
                    t0.mul(al).intoMemorySegment(c, off, NATIVE);
                    t1.mul(al).intoMemorySegment(c, off + 4L * L, NATIVE);
                } else {
                    t0.fma(al, FloatVector.fromMemorySegment(SP, c, off, NATIVE)).intoMemorySegment(c, off, NATIVE);
                    t1.fma(al, FloatVector.fromMemorySegment(SP, c, off + 4L * L, NATIVE)).intoMemorySegment(c, off + 4L * L, NATIVE);
                }
            }
            return;
        }
        if (store) java.util.Arrays.fill(u, 0f);
        else for (int r = 0; r < mr; r++) MemorySegment.copy(c, ElementCodec.FLOAT, ((long) (row + r) * ldc + col) * 4, u, r * NR, nr);
        for (int i = 0; i < ROWS_MAX * NR; i += L) FloatVector.fromArray(SP, t, i).fma(al, FloatVector.fromArray(SP, u, i)).intoArray(u, i);
        for (int r = 0; r < mr; r++) MemorySegment.copy(u, r * NR, c, ElementCodec.FLOAT, ((long) (row + r) * ldc + col) * 4, nr);
    }
}
