package dev.jsloth.cpu;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static dev.jsloth.cpu.GemmMicrokernels.*;
import static dev.jsloth.cpu.GemmPacking.keptPanels;
import static dev.jsloth.cpu.GemmPacking.packA;
import static dev.jsloth.cpu.GemmPacking.packB;
import static dev.jsloth.cpu.GemmPacking.packBNarrow;
import static dev.jsloth.cpu.GemmPacking.packBRows;
import static dev.jsloth.cpu.GemmPacking.packedOffset;
import static dev.jsloth.cpu.GemmPacking.paddedRows;
import static dev.jsloth.cpu.GemmPacking.panelHeight;

/**
 * Single-precision GEMM, {@code C += alpha * op(A) op(B)} (C pre-scaled by beta), in the BLIS layout: B is packed into
 * {@code KC x NR} column panels (one vector wide where N fits one vector and A is read in place: {@link GemmPacking#packBNarrow})
 * and A into row panels of 12, 6, 5 or 4 rows by KC (any storage type is widened to float while
 * packing), and a register-blocked microkernel with one vector accumulator per row and vector of NR runs over the
 * packed panels ({@link GemmMicrokernels#MR}: 12 rows where vectors are 512 bits wide, else 5; 6 on the short-k and in-place
 * paths). B's packed panels, which the microkernels read as vectors, live off-heap: vector loads from a MemorySegment measured 76 GFLOP/s on one core here,
 * the same kernel on float[] 45 (range checks on the vector loads in the inner loop). A's packed block, which the
 * packed kernels ({@link GemmMicrokernels#accumulatePacked}, {@link GemmMicrokernels#accumulatePackedWide}, {@link GemmMicrokernels#storeShort}) read a float at a time
 * to broadcast, is a float[]: there C2 hoists the range checks out of the loop, and the wide kernel parses to 10,300 IR
 * nodes (11,600 with its read-ahead) where with MemorySegment gets (~420 nodes each) it sat at 17,600, just under C2's
 * inlining cutoff (see accumulatePackedWide); the kernels for short k with a low-rank pair or an added C and for A read
 * in place ({@link GemmMicrokernels#accumulate}, {@link GemmMicrokernels#accumulateNarrow}) read A off-heap. Loop order: B's columns are taken
 * {@code nc} at a time and packed once for all of K (at most {@link #B_FLOATS} floats), then each MC-row block of A runs
 * through all of K in deep K blocks ({@link #KC}; deeper, {@link #KC_DIRECT_A}, where A is read in place), so each C
 * tile is loaded and stored only once per K block (the C update cost ~15% of 2048^3 with blocks of 256); where a K
 * block of B is larger than {@link #SWEEP_BYTES}, A is packed whole first and all row blocks go over B together, a column
 * range and a K block at a time, so that B's panels come from the cache rather than memory ({@link #prepacksA}). Row blocks are
 * of equal height, and work is split over (row block, column-panel range) pairs so that both tall and short-wide
 * products (LoRA's) keep every thread busy. A short product (one row block) instead packs B a block at a time, each
 * block by the thread that uses it next ({@link #streamsB}).
 */
final class GemmF32 {
    /**
     * Depth of a K block on the packed path. Each C tile is loaded and stored once per K block, and its lines have left
     * the cache by the next block; a deep block also means fewer, longer microkernel calls. The A block (MC x KC, 384
     * KB) and one B panel (KC x NR, 128 KB with 512-bit vectors) stay in L2 (2 MB a core on the AVX-512 VM); the panels
     * then stream from L2 rather than L1. With 5-row panels the A block is 960 KB, past the Zen 1 VM's 512 KB L2 (see
     * {@link #MC}). On this 2-core machine, against 256 (alternating JVMs, 2 threads, GFLOP/s, 6-row kernel):
     * 2048^3 136-154 vs 90-123, the training step's 512 x 512 x 1408 129-135 vs 77-111.
     */
    static final int KC = 1024;
    /**
     * Depth of a K block of a streamed B ({@link #streamsB}): with {@link #STREAM_PANELS} panels, a 1 MB block that the
     * thread packs and then runs its few row panels over. Each of the block's kernel calls is {@code KC_STREAMED} k steps
     * long, and its tile of C is updated once a block; at 128 (the earlier depth) a 4-row call's fixed costs were a
     * noticeable share of its 1,024 FMAs. Deeper than {@link #STRIPED_MAX_K}, the tiles go a B panel at a time across the
     * few row panels ({@link #rowStripe}), so each panel is read from L1 after its first row panel. See
     * {@link #STREAM_PANELS} for what the two sizes measured together.
     */
    private static final int KC_STREAMED = 256;
    /**
     * Width (in NR-column panels) of a streamed B block, 1024 columns: each of its rows is one sequential read of 4 KB
     * from B (a page, where B's rows start on one), which the copy ({@link GemmPacking#copyRowGroup}) reads faster than rows of 2 KB.
     * Paired in one JVM (depth x columns against the earlier 128 x 512, medians of 11-15 rounds' ratios, 2 threads unless
     * noted):
     * <table>
     * <caption>streamed block sizes</caption>
     * <tr><th>product</th><th>AMD Zen 1, AVX2 (NR 16)</th><th>Xeon, AVX-512 (NR 32)</th></tr>
     * <tr><td>16 x 4096 x 2048</td><td>1.153-1.163 (256 x 512 1.036-1.058, 128 x 1024 1.093, 256 x 2048 1.155,
     * 512 x 1024 0.98, 256 x 256 0.94)</td><td>1.021 (256 x 512 1.037)</td></tr>
     * <tr><td>16 x 4096 x 2048, 1 thread</td><td>1.158</td><td>1.036 (q1..q3 1.024..1.039)</td></tr>
     * <tr><td>16 x 512 x 512</td><td>1.156 (1 thread 1.055)</td><td>1.066 (quartiles 0.89..1.13)</td></tr>
     * <tr><td>24 x 2048 x 2048</td><td>1.162</td><td>1.024</td></tr>
     * <tr><td>8 x 4096 x 2048</td><td>1.192</td><td>-</td></tr>
     * </table>
     * Earlier, on the AVX-512 VM (GFLOP/s, two runs): 512 columns x 128 rows 93 / 65, 256 x 256 83 / -, 1024 x 64 90 / -,
     * 512 x 256 - / 69, 2048 x 32 82 / -, against 61 / 35 reading B's panels in place (rows at B's pitch, 256 deep).
     */
    private static final int STREAM_PANELS = 1024 / NR;
    /**
     * Depth of a K block when A is read in place ({@link #readsAInPlace}: N of one panel, so B's K blocks lie one after
     * another and any depth reads them alike): each of A's rows is then read in runs of up to 16 KB. 4092 x 16 x 2048,
     * one JVM, 2 threads, medians of 10 rounds: blocks of 2048 (all of K) 68.7 GFLOP/s against 63.6 with the 1024 of
     * {@link #KC}; blocks of 512 were slower (71.2 against 78.7 for 1024 in another run).
     */
    static final int KC_DIRECT_A = 4096;
    /**
     * Rows of an A block: 96 (8 panels of 12, or 16 of 6). At 12-row panels, blocks of 192 rows ran 2048^3 about as fast
     * (1.02x), and 4096 x 2048 x 16 (K = 16, writing C is all it does) 1 / 1.165 as fast: each B panel then stores into
     * 192 rows 8 KB apart.
     * <p>
     * With 5-row panels (256-bit vectors, no read-ahead of B: {@link GemmMicrokernels#accumulatePackedFive}) 240 rows: 48 panels of 5, or
     * 40 of 6 for the short-k kernels (a block is whole panels of either height). Each B panel is read from memory by the
     * first row panel of every A block that uses it, and that first call is slow: on an AMD Zen core, one thread, 2048^3,
     * 8.7 us against 4.9 for the calls after it (timed around each call), ~3% of the product at 24 panels a block. Twice
     * the rows halve those first passes; the A block (960 KB) then streams from L3 into the kernel, panel after panel,
     * which costs less. Paired in one JVM (the two heights alternating, medians of 11-25 rounds' ratios to 120 rows): 2048^3
     * 1.011-1.023 on 2 threads and 1.019 on 1; 4096 x 16 x 2048 1.033, 4096 x 2048 x 16 1.049; the training step's
     * 512 x 1408 x 512, 512 x 512 x 1408 and 512^3 1.011, 1.015 and 1.012; 1024^3 0.998. 360 rows ran 2048^3 as fast but
     * the 512-row products at 0.95 (two blocks, split by columns); 480 1.005-1.017, 720 and 1025 0.99 and 0.97. Earlier,
     * at 120 rows against others (ratios to OpenBLAS): 90 rows 0.936-0.959 against 0.956-0.970, 60 0.897, 150 x KC 256
     * 0.875, 120 x KC 512 0.937.
     */
    static final int MC = MR == FIVE_ROWS ? 240 : 16 * HALF;
    /** Packed-B budget (floats): B's columns are packed {@code B_FLOATS / K} at a time, all of K at once. */
    private static final int B_FLOATS = 1 << 22;

    private static final ThreadLocal<float[]> CTILE = ThreadLocal.withInitial(() -> new float[ROWS_MAX * NR + L]);
    private static final ThreadLocal<float[]> UTILE = ThreadLocal.withInitial(() -> new float[ROWS_MAX * NR]);
    /**
     * The packed A block off-heap, for the kernel that reads A from a MemorySegment ({@link GemmMicrokernels#accumulate}; see
     * {@code A_PACKED}); also what the wide kernel reads ahead when B's panel is too short for its reads.
     */
    private static final ThreadLocal<MemorySegment> A_SEG = ThreadLocal.withInitial(() -> Arena.ofAuto().allocate((long) MC * KC * 4, 64));
    /**
     * The packed A block on the heap, as the packed kernels read it ({@link GemmMicrokernels#accumulatePackedWide}, {@link GemmMicrokernels#storeShort});
     * short-k products, and the packed short last 6-row panel of an A read in place, copy it into {@code A_SEG} for the
     * kernel that reads A off-heap ({@link GemmMicrokernels#accumulate}).
     */
    private static final ThreadLocal<float[]> A_PACKED = ThreadLocal.withInitial(() -> new float[MC * KC]);
    /** A low-rank pair's packed A block on the heap (op(L) scaled, MC x rank). */
    private static final ThreadLocal<float[][]> LOW_A_PACKED = ThreadLocal.withInitial(() -> new float[1][0]);
    private static final ThreadLocal<MemorySegment[]> B_SEG = ThreadLocal.withInitial(() -> new MemorySegment[1]);
    private static final ThreadLocal<MemorySegment[]> LOW_SEG = ThreadLocal.withInitial(() -> new MemorySegment[1]);
    /** A low-rank pair's packed A block (op(L) scaled, MC x rank) off-heap, for {@link GemmMicrokernels#accumulate} (short k). */
    private static final ThreadLocal<MemorySegment[]> LOW_A_SEG = ThreadLocal.withInitial(() -> new MemorySegment[1]);
    /** The transposed product of {@link #multiplyTransposed}. */
    private static final ThreadLocal<MemorySegment[]> TRANSPOSED_SEG = ThreadLocal.withInitial(() -> new MemorySegment[1]);
    /** One streamed B block ({@link #streamsB}): {@link #KC_STREAMED} rows of {@link #STREAM_PANELS} panels. */
    private static final ThreadLocal<MemorySegment> STREAM_SEG =
            ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(4L * KC_STREAMED * STREAM_PANELS * NR, 64));
    /** {@link #multiplyTransposed}'s row of C. */
    private static final ThreadLocal<float[][]> TRANSPOSED_ROW = ThreadLocal.withInitial(() -> new float[1][0]);

    private GemmF32() {
    }

    /**
     * Products this short (M rows: one row block) stream B ({@link #streamsB}): packing all of it first would write it
     * out of the cache and read it back for a single use.
     */
    static final int STREAM_B_MAX_M = 4 * HALF;
    /**
     * Depth from which the packed kernels (B's panel as a slice made per B panel, A's from the heap block) pay for
     * themselves; below, the plain kernel, which reads A off-heap (a copy of the small packed block). Measured when the
     * slices were made per call and A was off-heap too.
     */
    static final int SLICED_MIN_K = 64;

    /**
     * Rows of a K block's row panels (kc deep): the wide kernel's where it runs (packed A, k of at least
     * {@link #SLICED_MIN_K}) and the narrow one's (A in place, N within one vector), else the 6-row kernels'. Row blocks
     * are whole panels of the first K block's height. Where MR is 12 a last panel of at most 6 rows is 6 high but in a
     * narrow product, and where MR is 5 a last block may start with 4-row ones ({@link GemmPacking#panelHeight}).
     */
    private static int panelRows(int kc, boolean directA, boolean narrow) {
        return kc >= SLICED_MIN_K && !directA || narrow ? MR : HALF;
    }

    /**
     * C (F32, row-major m x n) = alpha * op(A) op(B) when {@code overwrite}, else C += alpha * op(A) op(B) (C already
     * scaled by beta). Operands are packed, except a plain F32 A when N fits one panel (LoRA's X A^T), which the
     * microkernel reads where it is.
     */
    static void multiply(int m, int n, int k, float alpha, Matrix a, Matrix b, MemorySegment c, boolean overwrite) {
        multiply(m, n, k, alpha, a, b, null, null, 0, 0f, c, overwrite);
    }

    /** Whether {@link #multiply} reads op(A) where it is stored: a plain F32 A when N fits one panel. */
    private static boolean readsAInPlace(int n, Matrix a) {
        return !a.trans() && a.codec() == ElementCodec.F32 && n <= NR;
    }

    /**
     * Whether {@link #multiply} packs B a block at a time, each block by the thread that then uses it, instead of all of K
     * up front: a short product (LoRA's dA = dYB^T X; M at most {@link #STREAM_B_MAX_M}) whose B is stored untransposed
     * (each block row one sequential read), kept panels or not (so a frozen B gives the same bits). A block is
     * {@link #KC_STREAMED} rows of {@link #STREAM_PANELS} panels, packed and then used from the core's L2 or L3 (1 MB), so
     * B comes from memory once, in sequential reads.
     */
    static boolean streamsB(int m, Matrix b) {
        return m <= STREAM_B_MAX_M && !b.trans();
    }

    /**
     * Whether {@link #multiply(int, int, int, float, Matrix, Matrix, Matrix, Matrix, int, float, MemorySegment, boolean)}
     * takes a low-rank pair of this rank beside this product: both operands packed, the pair's steps run before the
     * first K block's in the same kernel call.
     */
    static boolean fusesLowRank(int m, int n, int k, int rank, Matrix a, Matrix b) {
        return k > 0 && rank > 0 && rank <= KC && !readsAInPlace(n, a);
    }

    /**
     * As {@link #multiply(int, int, int, float, Matrix, Matrix, MemorySegment, boolean)}, plus
     * {@code alpha * lowFactor * op(L) op(R)} (op(L) m x rank, op(R) rank x n) in the same accumulators: the kernel
     * runs the pair's {@code rank} steps and then the first K block's in one pass (LoRA's adapter term concatenated along
     * K with the base product), so it costs no pass over C of its own; its panels are in buffers of their own. As a
     * K block of its own, with its own C update, it took a 6-row kernel call, a C store and a C reload per tile: the
     * plain 6-row kernel and the C updates were 4.6% and 3.6% of a llama-25m training step's samples. Needs
     * {@link #fusesLowRank}; rank 0 is the plain product. Where {@link GemmFewRows} takes the base product (decoding),
     * the pair follows it as a rank-deep product into C.
     */
    static void multiply(int m, int n, int k, float alpha, Matrix a, Matrix b, Matrix l, Matrix r, int rank, float lowFactor,
                         MemorySegment c, boolean overwrite) {
        if (m == 0 || n == 0) return;
        if (k == 0 || alpha == 0) {
            if (overwrite) c.asSlice(0, 4L * m * n).fill((byte) 0);
            return;
        }
        if (GemmFewRows.takes(m, n, k, b)) { // decoding: W read once, as stored; a low-rank pair (K = rank) after it
            GemmFewRows.multiply(m, n, k, alpha, a, b, c, overwrite);
            if (rank > 0) multiply(m, n, rank, alpha * lowFactor, l, r, c, false);
            return;
        }
        if (rank > 0 && !fusesLowRank(m, n, k, rank, a, b)) throw new IllegalArgumentException("low-rank pair not fusable here");
        if (rank == 0 && computesTransposed(m, n, a, b)) {
            multiplyTransposed(m, n, k, alpha, a, b, c, overwrite);
            return;
        }
        Plan plan = Plan.of(m, n, k, a, b);
        boolean directA = plan.directA(), streamB = plan.streamB(), narrow = plan.narrow();
        int kcMax = plan.kcMax(), ncMax = plan.ncMax();
        int blocks = Math.ceilDiv(k, kcMax);
        MemorySegment bs = streamB ? null : threadBuffer(B_SEG, (long) k * ncMax, B_FLOATS);
        MemorySegment ls = rank > 0 ? threadBuffer(LOW_SEG, (long) rank * ncMax, 0) : null;
        for (int jc = 0; jc < n; jc += ncMax) {
            int nc = Math.min(ncMax, n - jc), panels = Math.ceilDiv(nc, NR), jcf = jc;
            if (rank > 0) packB(r, rank, jc, nc, ls);
            MemorySegment kept = streamB || narrow ? null : keptPanels(b, k, jc, nc);
            MemorySegment bBlocks = kept != null ? kept : bs;
            if (narrow) packBNarrow(b, k, n, bs);
            else if (kept == null && !streamB) packB(b, k, jc, nc, bs);
            // row blocks of (nearly) equal height, whole panels spread evenly (512 rows in 12-row panels as 5 x 84 + 92,
            // not 5 x 96 + 32: a short last block left a thread idle, 3-8% at the training step's 512 x 1408 products, 2
            // threads); panels of the height the first K block takes (pr below), so that only the product's last block
            // can end in a short one (5-row blocks on the 6-row paths ended each in a padded panel: 4096 x 2048 x 16,
            // 36 blocks, ~4% more rows)
            int unit = plan.unit(k);
            int mPanels = Math.ceilDiv(m, unit), mBlocks = rowBlocks(m, mPanels);
            // a streamed block is at most STREAM_PANELS wide
            int splits = Math.max(Math.max(1, Math.min(panels, Math.ceilDiv(Parallel.THREADS * 2, mBlocks))),
                    streamB ? Math.ceilDiv(panels, STREAM_PANELS) : 1);
            // B too large to stay cached between the row blocks that sweep it (prepacksA): A packed first, whole (a
            // chunk of row blocks at a time), and then the row blocks go over B a column range (sweep) and a K block at
            // a time, all of them in each before the next; else each row block runs through all of B and K by itself,
            // its A packed a K block at a time
            boolean prepack = prepacksA(directA, streamB, k, kcMax, mBlocks, panels);
            int sweep = prepack ? Math.max(1, (int) (SWEEP_BYTES / (4L * NR * kcMax))) : panels;
            int chunk = prepack ? chunkBlocks(m, k, mBlocks, aAllFloats) : mBlocks;
            int passes = prepack ? Math.ceilDiv(panels, sweep) * blocks : 1; // (sweep, K block) pairs, or one for all
            for (int cb0 = 0; cb0 < mBlocks; cb0 += chunk) {
                int ib0 = cb0, ib1 = Math.min(mBlocks, cb0 + chunk);
                int ic0 = blockRow(ib0, unit, mPanels, mBlocks);
                float[] aAll = prepack ? chunkBuffer(m, k, unit, mPanels, mBlocks, ib0, ib1) : null;
                for (int pass = 0; pass < passes; pass++) {
                    int j0 = prepack ? pass / blocks * sweep : 0, j1 = Math.min(panels, j0 + sweep);
                    int kbLo = prepack ? pass % blocks : 0, kbHi = prepack ? kbLo + 1 : blocks;
                    Parallel.forRange((ib1 - ib0) * splits, 1, (lo, hi) -> {
                        float[] ct = CTILE.get(), ut = UTILE.get();
                        MemorySegment as = A_SEG.get(), streamed = streamB ? STREAM_SEG.get() : null;
                        MemorySegment lowAs = rank > 0 ? threadBuffer(LOW_A_SEG, (long) MC * rank, 0) : null;
                        float[] ah = A_PACKED.get(), lowAh = rank > 0 ? heapBuffer(LOW_A_PACKED, MC * rank) : null;
                        for (int u = lo; u < hi; u++) {
                            int ib = ib0 + u / splits, s = u % splits;
                            int ic = blockRow(ib, unit, mPanels, mBlocks);
                            int mc = Math.min(m, blockRow(ib + 1, unit, mPanels, mBlocks)) - ic;
                            int q0 = Math.max(j0, panels * s / splits), q1 = Math.min(j1, panels * (s + 1) / splits);
                            if (q0 >= q1) continue;
                            for (int kb = kbLo; kb < kbHi; kb++) { // the C block (mc x nc) is revisited once per K block
                                int pc = kb * kcMax, kc = Math.min(kcMax, k - pc), lowK = kb == 0 ? rank : 0;
                                // B's panels from depth pc, or this block of a streamed B (panels q0..q1 only)
                                MemorySegment blockPanels = streamB ? streamed : bBlocks;
                                if (streamB) packBRows(b, pc, pc + kc, pc, kc, k, jcf + q0 * NR, Math.min(nc, q1 * NR) - q0 * NR, streamed);
                                boolean store = overwrite && kb == 0;
                                boolean sliced = kc >= SLICED_MIN_K;
                                int pr = panelRows(kc, directA, narrow);
                                // the packed block of A: this K block's of the prepacked chunk, or packed here into ah
                                float[] aBlock = aAll != null ? aAll : ah;
                                int padded = aAll != null ? paddedRows(pr, mc) : 0, aAt = aAll != null ? (ic - ic0) * k + padded * pc : 0;
                                if (!directA) {
                                    // the packed kernels read A from the heap; the plain one (short k) from off-heap
                                    // a prepacked chunk's blocks are packed in the first sweep (then in L2), read in the others
                                    int floats = aAll != null && j0 > 0 ? padded * kc : packA(a, ic, mc, pc, kc, pr, 1f, aBlock, aAt);
                                    if (!sliced) MemorySegment.copy(aBlock, aAt, as, ElementCodec.FLOAT, 0, floats);
                                    if (lowK > 0) {
                                        int lowFloats = packA(l, ic, mc, 0, lowK, pr, lowFactor, lowAh, 0);
                                        if (!sliced) MemorySegment.copy(lowAh, 0, lowAs, ElementCodec.FLOAT, 0, lowFloats);
                                    }
                                }
                                // the order of the tiles (rowStripe): one row panel across all of B's panels where B's block
                                // is small, else each B panel across all of A's row panels
                                int stripe = rowStripe(kc, q1 - q0, pr, mc);
                                boolean readAhead = sliced && stripe != pr && readsAhead(kc, panels, streamB);
                                for (int rs = 0, re; rs < mc; rs = re) { // the stripe: rows [rs, re), one row panel or all
                                    re = stripe == mc ? mc : Math.min(mc, rs + panelHeight(pr, mc - rs));
                                    // the wide kernel's read-ahead: each row panel of the stripe reads the next B panel from
                                    // the start of its share on (16 kc bytes: all of it where the stripe has 8 row panels)
                                    long share = (4L * NR * kc - 4L * L) / Math.ceilDiv(re - rs, pr);
                                    // the read-ahead's last offset within the panel (AHEAD_STEP bytes a k step over the longer part)
                                    long aheadLast = 4L * NR * kc - 4L * L - AHEAD_STEP * (Math.max(kc, lowK) - 1);
                                    for (int q = q0; q < q1; q++) {
                                        int col = jcf + q * NR, nr = Math.min(NR, n - col);
                                        long bo = 4L * (streamB ? packedOffset(0, q - q0, kc, q1 - q0) : packedOffset(pc, q, kc, panels));
                                        long lbo = 4L * packedOffset(0, q, lowK, panels); // the pair's panel q
                                        MemorySegment bPanel = sliced ? blockPanels.asSlice(bo, 4L * NR * kc) : null;
                                        MemorySegment lowBPanel = sliced && lowK > 0 ? ls.asSlice(lbo, 4L * NR * lowK) : null; // null: no pair
                                        // the next B panel, which the wide kernel reads ahead where B's block outgrows L2 and
                                        // each panel serves a stripe of row panels (readsAhead); else it reads its own again
                                        MemorySegment next = readAhead && q + 1 < q1 ? blockPanels.asSlice(4L * packedOffset(pc, q + 1, kc, panels), 4L * NR * kc) : bPanel;
                                        for (int ir = rs, h; ir < re; ir += h) {
                                            h = narrow ? MR : panelHeight(pr, mc - ir);
                                            int mr = Math.min(h, mc - ir);
                                            if (directA) { // never with a low-rank pair (fusesLowRank)
                                                // a narrow product's panels take the narrow kernel, in place (a short last
                                                // one too, of any height, its missing rows reading its first); the other
                                                // products' 6-row panels the 6-row kernels: a full panel read where it is, a
                                                // short last one packed, so the kernel never reads past A
                                                boolean inPlace = mr == h;
                                                if (narrow) { // in place, a short last panel's missing rows read its first
                                                    accumulateNarrow(kc, a.seg(), 4 * a.at(ic + ir, pc), 4L * a.cols(), mr, blockPanels, 4L * pc * L, ct);
                                                    updateTile(c, n, ic + ir, col, mr, nr, alpha, store, ct, ut);
                                                    continue;
                                                }
                                                if (!inPlace) {
                                                    int floats = packA(a, ic + ir, mr, pc, kc, pr, 1f, ah, 0);
                                                    if (!sliced) MemorySegment.copy(ah, 0, as, ElementCodec.FLOAT, 0, floats); // for the plain kernel
                                                }
                                                MemorySegment src = inPlace ? a.seg() : as;
                                                long ao = inPlace ? 4 * a.at(ic + ir, pc) : 0, aRow = inPlace ? 4L * a.cols() : 4;
                                                long aStep = inPlace ? 4 : 4L * h;
                                                if (inPlace || !sliced)
                                                    accumulate(0, null, 0, null, 0, kc, src, ao, aRow, aStep, blockPanels, bo, ct);
                                                else
                                                    accumulatePacked(0, null, 0, null, kc, ah, 0, bPanel, ct);
                                            } else if (!sliced) {
                                                // short k (LoRA's rank-16 products): the plain kernels, as the packed kernels'
                                                // slices would cost more than their bounds-check-free loop saves; a whole tile
                                                // of a plain product that overwrites C goes straight into it
                                                if (store && lowK == 0 && mr == HALF && nr == NR) {
                                                    storeShort(kc, aBlock, aAt + ir * kc, blockPanels, bo, c, 4L * ((long) (ic + ir) * n + col), 4L * n, alpha);
                                                    continue;
                                                }
                                                accumulate(lowK, lowAs, 4L * ir * lowK, ls, lbo, kc, as, 4L * ir * kc, 4, 4L * h, blockPanels, bo, ct);
                                            } else if (h == FIVE_ROWS) {
                                                accumulatePackedFive(lowK, lowAh, ir * lowK, lowBPanel, kc, aBlock, aAt + ir * kc, bPanel, ct);
                                            } else if (h == FOUR_ROWS) {
                                                accumulatePackedFour(lowK, lowAh, ir * lowK, lowBPanel, kc, aBlock, aAt + ir * kc, bPanel, ct);
                                            } else if (h > HALF) {
                                                // a pair much deeper than the K block would read past the panel: it reads this
                                                // thread's A buffer (384 KB) instead
                                                boolean fits = aheadLast >= 0;
                                                accumulatePackedWide(lowK, lowAh, ir * lowK, lowBPanel, kc, aBlock, aAt + ir * kc, bPanel, fits ? next : as,
                                                        fits ? Math.min(aheadLast, share * ((ir - rs) / pr)) : 0, ct);
                                            } else {
                                                accumulatePacked(lowK, lowAh, ir * lowK, lowBPanel, kc, aBlock, aAt + ir * kc, bPanel, ct);
                                            }
                                            updateTile(c, n, ic + ir, col, mr, nr, alpha, store, ct, ut);
                                        }
                                    }
                                }
                            }
                        }
                    });
                }
            }
        }
    }

    /**
     * How {@link #multiply} takes a product (past {@link GemmFewRows} and {@link #computesTransposed}): whether it reads
     * A in place ({@link #readsAInPlace}), streams B ({@link #streamsB}) or runs the narrow kernel (A in place, N within
     * one vector: {@link GemmMicrokernels#accumulateNarrow} on every row panel, B packed a vector wide by
     * {@link GemmPacking#packBNarrow}), the deepest K block, and the widest column block: from K alone (the low-rank
     * pair's panels have a buffer of their own), so that a frozen B's kept panels are the same blocks whatever pair rides
     * along; a streamed B packs only a block at a time, so it takes all of N at once. One record, so that the test hooks
     * ({@link #prepacksA(int, int, int, Matrix, Matrix)}, {@link #prepackChunks}) see the plan the product runs.
     */
    record Plan(boolean directA, boolean streamB, boolean narrow, int kcMax, int ncMax) {
        static Plan of(int m, int n, int k, Matrix a, Matrix b) {
            boolean directA = readsAInPlace(n, a), streamB = streamsB(m, b);
            boolean narrow = directA && n <= L && MR > HALF && !streamB;
            int kcMax = streamB ? KC_STREAMED : directA ? KC_DIRECT_A : KC;
            int ncMax = streamB ? Math.ceilDiv(n, NR) * NR : Math.max(NR, Math.min(Math.ceilDiv(n, NR) * NR, B_FLOATS / k / NR * NR));
            return new Plan(directA, streamB, narrow, kcMax, ncMax);
        }

        /** Rows of a panel of the row blocks: the first K block's panel height ({@link #panelRows}). */
        int unit(int k) {
            return panelRows(Math.min(kcMax, k), directA, narrow);
        }
    }

    /**
     * Whether {@link #multiply} forms C^T = op(B)^T op(A)^T instead: N fits one panel and is short enough to stream B
     * ({@link #STREAM_B_MAX_M}), M does not fit a panel, and A is stored transposed (LoRA's dB = dY^T XA). Packing op(A)
     * would copy all of it for NR columns of work; as the transposed product's B, A is streamed ({@link #streamsB}, M = N
     * short). One JVM, 2 threads, A transposed, medians of 8 rounds (GFLOP/s): 1408 x 16 x 512 (the training step's dB)
     * 30.1 against 9.6 packing op(A), 4096 x 16 x 2048 53.4 against 15.8. The mirror case too: M fits one panel, N does not,
     * B an F32 activation stored transposed (stacked LoRA's {@code (dY B)^T = B^T dY^T} and {@code A_all X^T}; M up to
     * {@link #MIRRORED_MAX_M}): op(B)^T is then B as stored, the transposed product's A (read in place where M fits one
     * panel), where packing op(B) transposed would copy all of it for M rows of work; only where M is the short side, so
     * the transposed product never turns back (M and N both in (NR, 64] otherwise recursed without end). Not for a
     * frozen B (a weight): its kept panels serve it, and decoding's X W^T goes to {@link GemmFewRows} (whose sums run in
     * another order than prefill's).
     */
    private static boolean computesTransposed(int m, int n, Matrix a, Matrix b) {
        int narrow = Math.min(NR, STREAM_B_MAX_M);
        return a.trans() && n <= narrow && m > NR
                || b.trans() && m <= MIRRORED_MAX_M && m < n && n > NR && b.panels() == null && b.codec() == ElementCodec.F32;
    }

    /**
     * The most rows of a mirrored transposed product (B an F32 activation stored transposed): stacked LoRA's
     * {@code A_all X^T} has the sum of the ranks (48 for Q/K/V at rank 16). One JVM, 1 thread, medians of 30 (us):
     * 48 x 4096 x 2048 15,725 as {@code X A_all^T} against 24,125 packing X^T (and 17,120 for three separate rank-16
     * products with X read in place); 48 x 512 x 512 2,510 / 2,451 / 2,349.
     */
    private static final int MIRRORED_MAX_M = 64;

    /** C (m x n) = or += alpha * (op(B)^T op(A)^T)^T, the transposed product formed in a scratch buffer first. */
    private static void multiplyTransposed(int m, int n, int k, float alpha, Matrix a, Matrix b, MemorySegment c, boolean overwrite) {
        MemorySegment t = threadBuffer(TRANSPOSED_SEG, (long) n * m, 0);
        multiply(n, m, k, alpha, flipped(b), flipped(a), t, true);
        float[][] held = TRANSPOSED_ROW.get();
        if (held[0].length < n) held[0] = new float[n];
        float[] out = held[0];
        for (int i = 0; i < m; i++) {
            if (overwrite) java.util.Arrays.fill(out, 0, n, 0f);
            else MemorySegment.copy(c, ElementCodec.FLOAT, 4L * i * n, out, 0, n);
            for (int j = 0; j < n; j++) out[j] += t.getAtIndex(ValueLayout.JAVA_FLOAT, (long) j * m + i);
            MemorySegment.copy(out, 0, c, ElementCodec.FLOAT, 4L * i * n, n);
        }
    }

    /** The same stored matrix read transposed the other way: op(flipped(x)) = op(x)^T. */
    private static Matrix flipped(Matrix x) {
        return new Matrix(x.seg(), x.codec(), x.base(), x.rows(), x.cols(), !x.trans(), x.panels());
    }


    /**
     * The calling thread's buffer ({@code B_SEG}, {@code LOW_SEG} for a low-rank pair's panels, {@code TRANSPOSED_SEG}
     * for {@link #multiplyTransposed}'s product), grown to at least {@code floats} (and made at least {@code minFloats}
     * when it has to grow).
     */
    private static MemorySegment threadBuffer(ThreadLocal<MemorySegment[]> buffer, long floats, long minFloats) {
        MemorySegment[] held = buffer.get();
        if (held[0] == null || held[0].byteSize() < floats * 4) held[0] = Arena.ofAuto().allocate(Math.max(floats, minFloats) * 4, 64);
        return held[0];
    }

    /** The calling thread's heap buffer ({@code LOW_A_PACKED}), grown to at least {@code floats}. */
    private static float[] heapBuffer(ThreadLocal<float[][]> buffer, int floats) {
        float[][] held = buffer.get();
        if (held[0].length < floats) held[0] = new float[floats];
        return held[0];
    }

    /**
     * Rows of C done across all of a B block's panels before the next rows start. For short k ({@link #STRIPED_MAX_K}:
     * writing C is then a large part of the work) and a block (kc x panels) of at most {@link #STRIPED_B_BYTES}, one row
     * panel: the block stays in L2, each A panel in L1, and C is written a few rows at a time. Else the whole A block
     * (mc): each B panel is read once per block and reused by every row panel. With the whole block at K = 16, each B
     * panel's 32 columns went into 96 rows 8 KB apart, and writing C was all the time. One JVM, 2 threads, the two
     * orders alternating, medians of 9-151 rounds' ratios (results bit-identical): 4096 x 2048 x 16 2.76x (22.5 -> 59.8
     * GFLOP/s), 1024 x 4096 x 16 2.17x, 512 x 1408 x 16 1.45x, 4096 x 2048 x 32 1.67x, x 64 1.35x, x 128 1.13x; deeper, no gain:
     * 4096 x 1024 x 256 1.05x, 512 x 512 x 256 1.00x, 512^3 0.95x.
     */
    private static int rowStripe(int kc, int panels, int pr, int mc) {
        return kc <= STRIPED_MAX_K && 4L * kc * panels * NR <= STRIPED_B_BYTES ? pr : mc;
    }

    /**
     * Whether the wide kernel reads the next B panel ahead ({@link GemmMicrokernels#accumulatePackedWide}): where B's packed block (kc x
     * panels) is larger than {@link #STRIPED_B_BYTES}, so that each B panel comes from L3 or memory for the first row
     * panel that uses it. Java has no prefetch instruction; the kernel's own loads of a B panel it meets for the first
     * time kept too few lines in flight, and those first passes ran at 27-50 GFLOP/s against 150-165 for the rest
     * (session 21: 35-50% of the kernel's time at 2048^3). Reading ahead, the first passes take 8.2 us a call like the
     * others (one thread, 2048^3: 23 ms in all against 70-74 ms). Not for a streamed B (packed a block at a time: its
     * next panel was packed just now) or a block that stays in L2; nor (the caller's test) where one row panel sweeps a
     * thread's panels ({@link #rowStripe}: they then fit in L2 after its first sweep).
     */
    private static boolean readsAhead(int kc, int panels, boolean streamB) {
        return !streamB && 4L * kc * panels * NR > STRIPED_B_BYTES;
    }

    /**
     * Whether {@link #multiply} packs A whole before the products (a chunk of row blocks at a time, {@link #chunkBlocks})
     * and has all row blocks sweep B together, a column range of {@link #SWEEP_BYTES} and a K block at a time: where B's
     * K block (kc x all its panels) is larger than that, each thread has at least two row blocks, and every K block is
     * deep enough for the packed kernels (so that all of A's panels are of one height).
     */
    private static boolean prepacksA(boolean directA, boolean streamB, int k, int kcMax, int mBlocks, int panels) {
        return !directA && !streamB && (k % kcMax == 0 || k % kcMax >= SLICED_MIN_K) && mBlocks >= 2 * Parallel.THREADS
                && 4L * NR * Math.min(kcMax, k) * panels > SWEEP_BYTES;
    }

    /** Whether {@link #multiply} (no low-rank pair) packs A first for this product's first column block ({@link #prepacksA}): for tests. */
    static boolean prepacksA(int m, int n, int k, Matrix a, Matrix b) {
        return prepackChunks(m, n, k, a, b) > 0;
    }

    /**
     * The chunks of row blocks that {@link #multiply} (no low-rank pair) packs A in, one after another, for this
     * product's first column block ({@link #chunkBlocks}, at the current {@link #aAllFloats}); 0 where it does not pack A
     * first. For tests.
     */
    static int prepackChunks(int m, int n, int k, Matrix a, Matrix b) {
        if (m == 0 || n == 0 || k == 0 || GemmFewRows.takes(m, n, k, b) || computesTransposed(m, n, a, b)) return 0;
        Plan plan = Plan.of(m, n, k, a, b);
        int mBlocks = rowBlocks(m, Math.ceilDiv(m, plan.unit(k))), panels = Math.ceilDiv(Math.min(n, plan.ncMax()), NR);
        if (!prepacksA(plan.directA(), plan.streamB(), k, plan.kcMax(), mBlocks, panels)) return 0;
        return Math.ceilDiv(mBlocks, chunkBlocks(m, k, mBlocks, aAllFloats));
    }

    /**
     * Bytes of B's K block that the row blocks sweep together where A is packed first ({@link #prepacksA}): 1024
     * columns of a 1024-deep block. 2048^3 on the AVX-512 Zen 5 VM (1 MB L2 a core), where each row block had swept all
     * 8 MB of a K block (its B panels then came from memory: the kernel ran at 171-187 GFLOP/s against 205-209 where N
     * was 1024, one thread), ratio to OpenBLAS in the same process, 2 threads, 3 JVMs each: 1 MB 0.874 / 0.874 / 0.897,
     * 2 MB 0.853 / 0.937 / 0.929, 4 MB 0.924 / 0.905 / 0.887, 8 MB (one sweep) 0.910 / 0.857 / 0.902.
     */
    static final long SWEEP_BYTES = 4L << 20;
    /** The most floats of A packed at once ({@link #prepacksA}): 32 MB. */
    static final long A_ALL_FLOATS = 1 << 23;
    /**
     * The budget {@link #multiply} packs A in: {@link #A_ALL_FLOATS}, lowered by tests to run a small product in several
     * chunks (the chunks change no result: each tile still takes the same K blocks in the same order).
     */
    static long aAllFloats = A_ALL_FLOATS;
    /** The calling thread's buffer for A packed whole ({@link #chunkBuffer}; kept for the next product). */
    private static final ThreadLocal<float[][]> A_ALL = ThreadLocal.withInitial(() -> new float[1][0]);

    /**
     * Row blocks packed together where A is packed first: all, or as few equal chunks as keep each within
     * {@code budget} floats (a multiple of the thread count, so each thread has as many; that rounding can take a chunk
     * past the budget).
     */
    private static int chunkBlocks(int m, int k, int mBlocks, long budget) {
        long floats = (long) (m + ROWS_MAX) * k;
        if (floats <= budget) return mBlocks;
        int chunks = (int) Math.ceilDiv(floats, budget), t = Parallel.THREADS;
        return Math.ceilDiv(Math.ceilDiv(mBlocks, chunks), t) * t;
    }

    /**
     * First row of row block ib of mBlocks (whole panels of {@code unit} rows, spread evenly: {@link #rowBlocks}); for
     * ib = mBlocks, the rows rounded up to whole panels.
     */
    private static int blockRow(int ib, int unit, int mPanels, int mBlocks) {
        return unit * (int) ((long) ib * mPanels / mBlocks);
    }

    /**
     * The calling thread's {@code A_ALL}, grown to hold A's row blocks [ib0, ib1) packed for all of K: block ib's K block
     * at depth pc at {@code (ic - ic0) * k + paddedRows * pc}, ic0 the first block's row (each the panels
     * {@link GemmPacking#packA} writes for one block).
     */
    private static float[] chunkBuffer(int m, int k, int unit, int mPanels, int mBlocks, int ib0, int ib1) {
        int ic0 = blockRow(ib0, unit, mPanels, mBlocks);
        int icEnd = Math.min(m, blockRow(ib1, unit, mPanels, mBlocks)), lastIc = blockRow(ib1 - 1, unit, mPanels, mBlocks);
        return heapBuffer(A_ALL, ((lastIc - ic0) + paddedRows(unit, icEnd - lastIc)) * k);
    }

    /** The deepest K block done a row panel at a time ({@link #rowStripe}). */
    private static final int STRIPED_MAX_K = 128;
    /** The largest B block (bytes) done a row panel at a time ({@link #rowStripe}): half of this machine's 2 MB L2. */
    private static final long STRIPED_B_BYTES = 1 << 20;

    /**
     * Row blocks of a product of m rows (mPanels panels): blocks of at most {@link #MC} rows, and where there are more
     * blocks than threads, a multiple of the thread count (each block a little lower), so the threads' last blocks end
     * together: 2048 rows in blocks of up to 90 were 23, and with 2 threads one of them ran the 23rd alone.
     */
    private static int rowBlocks(int m, int mPanels) {
        int blocks = Math.ceilDiv(m, MC), t = Parallel.THREADS;
        return blocks > t ? Math.min(mPanels, Math.ceilDiv(blocks, t) * t) : blocks;
    }

}
