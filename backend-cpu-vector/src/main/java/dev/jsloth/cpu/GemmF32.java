package dev.jsloth.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * Single-precision GEMM, {@code C += alpha * op(A) op(B)} (C pre-scaled by beta), in the BLIS layout: B is packed into
 * {@code KC x NR} column panels (one vector wide where N fits one vector and A is read in place: {@link #packBNarrow})
 * and A into row panels of 12, 6, 5 or 4 rows by KC (any storage type is widened to float while
 * packing), and a register-blocked microkernel with one vector accumulator per row and vector of NR runs over the
 * packed panels ({@link #MR}: 12 rows where vectors are 512 bits wide, else 5; 6 on the short-k and in-place
 * paths). B's packed panels, which the microkernels read as vectors, live off-heap: vector loads from a MemorySegment measured 76 GFLOP/s on one core here,
 * the same kernel on float[] 45 (range checks on the vector loads in the inner loop). A's packed block, which the
 * packed kernels ({@link #accumulatePacked}, {@link #accumulatePackedWide}, {@link #storeShort}) read a float at a time
 * to broadcast, is a float[]: there C2 hoists the range checks out of the loop, and the wide kernel parses to 10,300 IR
 * nodes (11,600 with its read-ahead) where with MemorySegment gets (~420 nodes each) it sat at 17,600, just under C2's
 * inlining cutoff (see accumulatePackedWide); the kernels for short k with a low-rank pair or an added C and for A read
 * in place ({@link #accumulate}, {@link #accumulateNarrow}) read A off-heap. Loop order: B's columns are taken
 * {@code nc} at a time and packed once for all of K (at most {@link #B_FLOATS} floats), then each MC-row block of A runs
 * through all of K in deep K blocks ({@link #KC}; deeper, {@link #KC_DIRECT_A}, where A is read in place), so each C
 * tile is loaded and stored only once per K block (the C update cost ~15% of 2048^3 with blocks of 256). Row blocks are
 * of equal height, and work is split over (row block, column-panel range) pairs so that both tall and short-wide
 * products (LoRA's) keep every thread busy. A short product (one row block) instead packs B a block at a time, each
 * block by the thread that uses it next ({@link #streamsB}).
 */
final class GemmF32 {
    private static final VectorSpecies<Float> SP = FloatVector.SPECIES_PREFERRED;
    private static final int L = SP.length();
    /** Rows of the microkernel that also serves the short and in-place cases ({@link #accumulate}). */
    static final int HALF = 6;
    /** Rows of {@link #accumulatePackedFive}, the packed kernel where vectors are narrower than 512 bits. */
    static final int FIVE_ROWS = 5;
    /** Rows of {@link #accumulatePackedFour}: a block's first panels where its rows are not a multiple of 5 ({@link #panelHeight}). */
    static final int FOUR_ROWS = 4;
    /**
     * Rows of a packed A panel on the main path (deep k, packed A) and of A's row panels where A is read in place and N
     * fits one vector ({@link #accumulateNarrow}, a last panel of any height too); 6 in the other cases, and for a packed
     * block's last panel of at most 6 rows where MR is 12; 4 for a last block's first panels where MR is 5
     * ({@link #panelHeight}). With 512-bit vectors
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
    private static final int ROWS_MAX = Math.max(MR, HALF);
    static final int NR = 2 * L;
    /**
     * Depth of a K block on the packed path. Each C tile is loaded and stored once per K block, and its lines have left
     * the cache by the next block; a deep block also means fewer, longer microkernel calls. The A block (MC x KC, 384
     * KB) and one B panel (KC x NR, 128 KB with 512-bit vectors) stay in L2 (2 MB a core on the AVX-512 VM); the panels
     * then stream from L2 rather than L1. With 5-row panels the A block is 960 KB, past the Zen 1 VM's 512 KB L2 (see
     * {@link #MC}). On this 2-core machine, against 256 (alternating JVMs, 2 threads, GFLOP/s, 6-row kernel):
     * 2048^3 136-154 vs 90-123, the training step's 512 x 512 x 1408 129-135 vs 77-111.
     */
    private static final int KC = 1024;
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
     * from B (a page, where B's rows start on one), which the copy ({@link #copyRowGroup}) reads faster than rows of 2 KB.
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
    private static final int KC_DIRECT_A = 4096;
    /**
     * Rows of an A block: 96 (8 panels of 12, or 16 of 6). At 12-row panels, blocks of 192 rows ran 2048^3 about as fast
     * (1.02x), and 4096 x 2048 x 16 (K = 16, writing C is all it does) 1 / 1.165 as fast: each B panel then stores into
     * 192 rows 8 KB apart.
     * <p>
     * With 5-row panels (256-bit vectors, no read-ahead of B: {@link #accumulatePackedFive}) 240 rows: 48 panels of 5, or
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
    private static final int MC = MR == FIVE_ROWS ? 240 : 16 * HALF;
    /** Packed-B budget (floats): B's columns are packed {@code B_FLOATS / K} at a time, all of K at once. */
    private static final int B_FLOATS = 1 << 22;

    private static final ThreadLocal<float[]> ROW = ThreadLocal.withInitial(() -> new float[Math.max(KC_DIRECT_A, MC)]);
    private static final ThreadLocal<float[][]> ROW_WIDE = ThreadLocal.withInitial(() -> new float[1][0]);
    /**
     * Heap staging: a B panel (element stores into the array, then one bulk copy off-heap), or a plain A panel's rows
     * before {@link #packPlainPanel} gathers them.
     */
    private static final ThreadLocal<float[]> STAGE = ThreadLocal.withInitial(() -> new float[Math.max(ROWS_MAX * Math.max(KC, KC_DIRECT_A), KC * NR)]);
    /** {@link #packPlainPanel}'s gather indices (one period: lcm(pr, L) <= pr * L). */
    private static final ThreadLocal<int[]> GATHER_MAP = ThreadLocal.withInitial(() -> new int[ROWS_MAX * L]);
    private static final ThreadLocal<float[]> CTILE = ThreadLocal.withInitial(() -> new float[ROWS_MAX * NR + L]);
    private static final ThreadLocal<float[]> UTILE = ThreadLocal.withInitial(() -> new float[ROWS_MAX * NR]);
    /**
     * The packed A block off-heap, for the kernel that reads A from a MemorySegment ({@link #accumulate}; see
     * {@code A_PACKED}); also what the wide kernel reads ahead when B's panel is too short for its reads.
     */
    private static final ThreadLocal<MemorySegment> A_SEG = ThreadLocal.withInitial(() -> Arena.ofAuto().allocate((long) MC * KC * 4, 64));
    /**
     * The packed A block on the heap, as the packed kernels read it ({@link #accumulatePackedWide}, {@link #storeShort});
     * short-k products, and the packed short last 6-row panel of an A read in place, copy it into {@code A_SEG} for the
     * kernel that reads A off-heap ({@link #accumulate}).
     */
    private static final ThreadLocal<float[]> A_PACKED = ThreadLocal.withInitial(() -> new float[MC * KC]);
    /** A low-rank pair's packed A block on the heap (op(L) scaled, MC x rank). */
    private static final ThreadLocal<float[][]> LOW_A_PACKED = ThreadLocal.withInitial(() -> new float[1][0]);
    private static final ThreadLocal<MemorySegment[]> B_SEG = ThreadLocal.withInitial(() -> new MemorySegment[1]);
    private static final ThreadLocal<MemorySegment[]> LOW_SEG = ThreadLocal.withInitial(() -> new MemorySegment[1]);
    /** A low-rank pair's packed A block (op(L) scaled, MC x rank) off-heap, for {@link #accumulate} (short k). */
    private static final ThreadLocal<MemorySegment[]> LOW_A_SEG = ThreadLocal.withInitial(() -> new MemorySegment[1]);
    /** The transposed product of {@link #multiplyTransposed}. */
    private static final ThreadLocal<MemorySegment[]> TRANSPOSED_SEG = ThreadLocal.withInitial(() -> new MemorySegment[1]);
    /** One streamed B block ({@link #streamsB}): {@link #KC_STREAMED} rows of {@link #STREAM_PANELS} panels. */
    private static final ThreadLocal<MemorySegment> STREAM_SEG =
            ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(4L * KC_STREAMED * STREAM_PANELS * NR, 64));
    private static final ValueLayout.OfFloat PACKED = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();

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
    private static final int SLICED_MIN_K = 64;

    /**
     * Rows of a K block's row panels (kc deep): the wide kernel's where it runs (packed A, k of at least
     * {@link #SLICED_MIN_K}) and the narrow one's (A in place, N within one vector), else the 6-row kernels'. Row blocks
     * are whole panels of the first K block's height. Where MR is 12 a last panel of at most 6 rows is 6 high but in a
     * narrow product, and where MR is 5 a last block may start with 4-row ones ({@link #panelHeight}).
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
     * {@link #fusesLowRank}; rank 0 is the plain product.
     */
    static void multiply(int m, int n, int k, float alpha, Matrix a, Matrix b, Matrix l, Matrix r, int rank, float lowFactor,
                         MemorySegment c, boolean overwrite) {
        if (m == 0 || n == 0) return;
        if (k == 0 || alpha == 0) {
            if (overwrite) c.asSlice(0, 4L * m * n).fill((byte) 0);
            return;
        }
        if (rank > 0 && !fusesLowRank(m, n, k, rank, a, b)) throw new IllegalArgumentException("low-rank pair not fusable here");
        if (rank == 0 && computesTransposed(m, n, a, b)) {
            multiplyTransposed(m, n, k, alpha, a, b, c, overwrite);
            return;
        }
        boolean directA = readsAInPlace(n, a), streamB = streamsB(m, b);
        // A in place, N within one vector: accumulateNarrow on every row panel, B packed a vector wide (packBNarrow)
        boolean narrow = directA && n <= L && MR > HALF && !streamB;
        int kcMax = streamB ? KC_STREAMED : directA ? KC_DIRECT_A : KC;
        int blocks = ceilDiv(k, kcMax);
        // column blocks from K alone (the low-rank pair's panels have a buffer of their own), so that a frozen B's kept
        // panels are the same blocks whatever pair rides along; a streamed B packs only a block at a time, so it takes all
        // of N at once
        int ncMax = streamB ? ceilDiv(n, NR) * NR : Math.max(NR, Math.min(ceilDiv(n, NR) * NR, B_FLOATS / k / NR * NR));
        MemorySegment bs = streamB ? null : threadBuffer(B_SEG, (long) k * ncMax, B_FLOATS);
        MemorySegment ls = rank > 0 ? threadBuffer(LOW_SEG, (long) rank * ncMax, 0) : null;
        for (int jc = 0; jc < n; jc += ncMax) {
            int nc = Math.min(ncMax, n - jc), panels = ceilDiv(nc, NR), jcf = jc;
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
            int unit = panelRows(Math.min(kcMax, k), directA, narrow);
            int mPanels = ceilDiv(m, unit), mBlocks = rowBlocks(m, mPanels);
            // a streamed block is at most STREAM_PANELS wide
            int splits = Math.max(Math.max(1, Math.min(panels, ceilDiv(Parallel.THREADS * 2, mBlocks))),
                    streamB ? ceilDiv(panels, STREAM_PANELS) : 1);
            Parallel.forRange(mBlocks * splits, 1, (lo, hi) -> {
                float[] ct = CTILE.get(), ut = UTILE.get();
                MemorySegment as = A_SEG.get(), streamed = streamB ? STREAM_SEG.get() : null;
                MemorySegment lowAs = rank > 0 ? threadBuffer(LOW_A_SEG, (long) MC * rank, 0) : null;
                float[] ah = A_PACKED.get(), lowAh = rank > 0 ? heapBuffer(LOW_A_PACKED, MC * rank) : null;
                for (int u = lo; u < hi; u++) {
                    int ib = u / splits, s = u % splits;
                    int ic = unit * (int) ((long) ib * mPanels / mBlocks);
                    int mc = Math.min(m, unit * (int) ((long) (ib + 1) * mPanels / mBlocks)) - ic;
                    int q0 = panels * s / splits, q1 = panels * (s + 1) / splits;
                    for (int kb = 0; kb < blocks; kb++) { // the C block (mc x nc) is revisited once per K block
                        int pc = kb * kcMax, kc = Math.min(kcMax, k - pc), lowK = kb == 0 ? rank : 0;
                        // B's panels from depth pc, or this block of a streamed B (panels q0..q1 only)
                        MemorySegment blockPanels = streamB ? streamed : bBlocks;
                        if (streamB) packBRows(b, pc, pc + kc, pc, kc, k, jcf + q0 * NR, Math.min(nc, q1 * NR) - q0 * NR, streamed);
                        boolean store = overwrite && kb == 0;
                        boolean sliced = kc >= SLICED_MIN_K;
                        int pr = panelRows(kc, directA, narrow);
                        if (!directA) {
                            // the packed kernels read A from the heap; the plain one (short k) from off-heap
                            int floats = packA(a, ic, mc, pc, kc, pr, 1f, ah);
                            if (!sliced) MemorySegment.copy(ah, 0, as, ElementCodec.FLOAT, 0, floats);
                            if (lowK > 0) {
                                int lowFloats = packA(l, ic, mc, 0, lowK, pr, lowFactor, lowAh);
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
                            long share = (4L * NR * kc - 4L * L) / ceilDiv(re - rs, pr);
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
                                            int floats = packA(a, ic + ir, mr, pc, kc, pr, 1f, ah);
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
                                            storeShort(kc, ah, ir * kc, blockPanels, bo, c, 4L * ((long) (ic + ir) * n + col), 4L * n, alpha);
                                            continue;
                                        }
                                        accumulate(lowK, lowAs, 4L * ir * lowK, ls, lbo, kc, as, 4L * ir * kc, 4, 4L * h, blockPanels, bo, ct);
                                    } else if (h == FIVE_ROWS) {
                                        accumulatePackedFive(lowK, lowAh, ir * lowK, lowBPanel, kc, ah, ir * kc, bPanel, ct);
                                    } else if (h == FOUR_ROWS) {
                                        accumulatePackedFour(lowK, lowAh, ir * lowK, lowBPanel, kc, ah, ir * kc, bPanel, ct);
                                    } else if (h > HALF) {
                                        // a pair much deeper than the K block would read past the panel: it reads this
                                        // thread's A buffer (384 KB) instead
                                        boolean fits = aheadLast >= 0;
                                        accumulatePackedWide(lowK, lowAh, ir * lowK, lowBPanel, kc, ah, ir * kc, bPanel, fits ? next : as,
                                                fits ? Math.min(aheadLast, share * ((ir - rs) / pr)) : 0, ct);
                                    } else {
                                        accumulatePacked(lowK, lowAh, ir * lowK, lowBPanel, kc, ah, ir * kc, bPanel, ct);
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
     * frozen B (a weight, e.g. decoding's X W^T): its kept panels serve it, and its sums keep the order prefill gives them.
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
        float[][] held = ROW_WIDE.get(); // free again: the product above has packed its last row
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

    /** Float offset of panel q of the k block that starts at packed depth pc (kc deep): the blocks of K one after another. */
    private static long packedOffset(int pc, int q, int kc, int panels) {
        return (long) pc * panels * NR + (long) q * kc * NR;
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
     * B's panels of columns [jc, jc + nc) for all of K from its kept panels (a frozen tensor's, packed on first use), or
     * null where B keeps none or their budget is spent. Only a packed B keeps panels, so they are always in K blocks
     * of {@link #KC}.
     */
    private static MemorySegment keptPanels(Matrix b, int k, int jc, int nc) {
        if (b.panels() == null) return null;
        return b.panels().block(new PanelCache.Key(b.trans(), k, jc, nc), (long) k * ceilDiv(nc, NR) * NR,
                into -> packB(b, k, jc, nc, into));
    }

    /** Packs op(B)[0..k, jc..jc+nc] for all of K in blocks of {@link #KC} (see {@link #packedOffset}). */
    private static void packB(Matrix b, int k, int jc, int nc, MemorySegment bs) {
        int panels = ceilDiv(nc, NR);
        if (b.trans()) {
            int kBlocks = ceilDiv(k, KC);
            Parallel.forRange(kBlocks * panels, 8, (lo, hi) -> {
                for (int u = lo; u < hi; u++) {
                    int pc = (u / panels) * KC, q = u % panels, kc = Math.min(KC, k - pc);
                    packBTransposed(b, pc, kc, jc + q * NR, Math.min(NR, nc - q * NR), NR, bs, packedOffset(pc, q, kc, panels));
                }
            });
        } else {
            Parallel.forRange(k, 16, (lo, hi) -> packBRows(b, lo, hi, 0, KC, k, jc, nc, bs));
        }
    }

    /**
     * Packs op(B) (k x n, n at most one vector) for {@link #accumulateNarrow}: k rows of {@link #L} floats (zero past
     * n), the K blocks one after another, so a narrow product's B takes half the bytes of an NR-wide panel and stays in
     * L1 while A's rows stream by. In runs of as many depths as {@code STAGE} holds at L floats each (at most
     * {@code ROW}'s length); a transposed B (LoRA's A factor, {@code X A^T}) through {@link #packBTransposed} at width L.
     */
    private static void packBNarrow(Matrix b, int k, int n, MemorySegment bs) {
        float[] st = STAGE.get();
        int run = Math.min(st.length / L, ROW.get().length);
        for (int p0 = 0; p0 < k; p0 += run) {
            int len = Math.min(run, k - p0);
            if (b.trans()) {
                packBTransposed(b, p0, len, 0, n, L, bs, (long) p0 * L);
                continue;
            }
            java.util.Arrays.fill(st, 0, len * L, 0f);
            for (int p = 0; p < len; p++) b.codec().readFloats(b.seg(), b.at(p0 + p, 0), st, p * L, n);
            MemorySegment.copy(st, 0, bs, ElementCodec.FLOAT, 4L * p0 * L, len * L);
        }
    }

    /**
     * Rows of the A panel that starts {@code rowsLeft} rows before the end of its block: {@code pr}, except that a last
     * panel of at most {@link #HALF} rows is HALF high where pr is 12. A block of 88 rows (a 256-row product's last) is
     * then 7 x 12 + 6 rows, on the wide kernel but for the last panel; choosing one height per block, it had gone all
     * 6-row (90 rows computed rather than 96), and in a llama-25m step of 256 tokens the 6-row kernel took 20% of the
     * samples. Also 16 rows: 12 + 6 (as 6 + 6 + 6 earlier; 12 + 12 computed 24 and ran 16 x 4096 x 2048 at 1 / 1.19).
     * <p>
     * Where pr is 5 ({@link #MR} with 256-bit vectors), 4 while the rows left are not a multiple of 5, so a block's 4-row
     * panels come first: every count from 12 rows on is then whole panels of 5 and 4 (16 = 4 x 4, a last block of 118
     * rows 4 + 4 + 22 x 5), and a smaller one pads at most 3 rows. Row blocks start on multiples of 5, so only a
     * product's last block takes 4-row panels. The 5- and 4-row kernels run at the same rate a row (37-38 GFLOP/s on one
     * AMD Zen core, alone); this replaced 6-row panels here (16 = 6 + 5 + 5), whose kernel keeps an accumulator on the
     * stack on AVX2 and ran ~22% slower a row in 16 x 4096 x 2048 (perf: 10.05% of the samples for 6 rows, 13.75% for 10
     * on the 5-row kernel).
     */
    private static int panelHeight(int pr, int rowsLeft) {
        if (pr == FIVE_ROWS) return rowsLeft % FIVE_ROWS == 0 ? FIVE_ROWS : FOUR_ROWS;
        return pr > HALF && rowsLeft <= HALF ? HALF : pr;
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
     * Whether the wide kernel reads the next B panel ahead ({@link #accumulatePackedWide}): where B's packed block (kc x
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
     * Bytes the wide kernel's read-ahead moves on a k step ({@link #accumulatePackedWide}): a constant, so that C2 drops
     * the load's bounds check. A call then reads {@code 16 kc} bytes ahead, the share of each of a 96-row stripe's 8 row
     * panels; a shorter stripe's panels leave part of the next B panel to the kernel's own loads.
     */
    private static final long AHEAD_STEP = 16;

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
        int blocks = ceilDiv(m, MC), t = Parallel.THREADS;
        return blocks > t ? Math.min(mPanels, ceilDiv(blocks, t) * t) : blocks;
    }

    private static int ceilDiv(int a, int b) {
        return (a + b - 1) / b;
    }

    /**
     * Packs {@code scale * op(A)[ic..ic+mc, pc..pc+kc]} as panels of {@link #panelHeight} rows (pr, the last one maybe
     * fewer, the first ones 4 where pr is 5), k-major inside a panel, panel after panel (the one at row ir at {@code ir * kc}), zero-padded (scale 1 is
     * exact), into {@code ap} from its start; returns the floats written. A transposed A is read one stored row (all mc
     * values of one k) at a time, a plain one a panel at a time ({@link #packPlainPanel}).
     */
    private static int packA(Matrix a, int ic, int mc, int pc, int kc, int pr, float scale, float[] ap) {
        float[] row = ROW.get();
        int padded = 0; // rows computed
        while (padded < mc) padded += panelHeight(pr, mc - padded);
        if (a.trans()) {
            for (int p = 0; p < kc; p++) {
                a.codec().readFloats(a.seg(), a.at(ic, pc + p), row, 0, mc);
                java.util.Arrays.fill(row, mc, padded, 0f);
                for (int ir = 0, h; ir < mc; ir += h) {
                    h = panelHeight(pr, mc - ir);
                    int at = ir * kc + p * h;
                    for (int r = 0; r < h; r++) ap[at + r] = row[ir + r] * scale;
                }
            }
        } else {
            int[] map = GATHER_MAP.get();
            float[] st = STAGE.get();
            for (int ir = 0, h, mapped = 0; ir < mc; ir += h) {
                h = panelHeight(pr, mc - ir);
                if (h != mapped) gatherMap(mapped = h, kc, map);
                packPlainPanel(a, ic + ir, Math.min(h, mc - ir), pc, kc, h, scale, st, map, ap, ir * kc);
            }
        }
        return padded * kc;
    }

    /**
     * One pr-row panel of a plain (untransposed) A: its rows staged whole (bulk copies; rows past mr zero), then
     * transposed into k-major order with vector gathers, straight into the packed block. Output float {@code i} is row
     * {@code i % pr} at depth {@code i / pr}, so the gathers' index pattern repeats every {@link #gatherPeriod} floats
     * ({@code period / pr} depths further on); {@code map} holds that period's indices ({@link #gatherMap}). The element
     * by element scatter this replaced (stride-pr scalar stores into a heap stage, then a bulk copy off-heap) took 7.5%
     * of a llama-25m training step's samples (2 x 256 tokens, perf); this takes 3.7%.
     */
    private static void packPlainPanel(Matrix a, int row0, int mr, int pc, int kc, int pr, float scale, float[] rows,
                                       int[] map, float[] ap, int at) {
        for (int r = 0; r < pr; r++) {
            if (r < mr) a.codec().readFloats(a.seg(), a.at(row0 + r, pc), rows, r * kc, kc);
            else java.util.Arrays.fill(rows, r * kc, (r + 1) * kc, 0f);
        }
        int period = gatherPeriod(pr), total = pr * kc, i = 0;
        FloatVector s = FloatVector.broadcast(SP, scale);
        for (int depth = 0; i + period <= total; i += period, depth += period / pr)
            for (int v = 0; v < period; v += L)
                FloatVector.fromArray(SP, rows, depth, map, v).mul(s).intoArray(ap, at + i + v);
        for (; i < total; i++) ap[at + i] = rows[(i % pr) * kc + i / pr] * scale;
    }

    /** Floats of a packed plain-A panel after which {@link #packPlainPanel}'s gather indices repeat: lcm(pr, L). */
    private static int gatherPeriod(int pr) {
        int g = pr, b = L;
        while (b != 0) {
            int t = g % b;
            g = b;
            b = t;
        }
        return pr / g * L;
    }

    /** The gather indices of one period ({@link #gatherPeriod}): output float i reads row i % pr at depth i / pr. */
    private static void gatherMap(int pr, int kc, int[] map) {
        for (int i = 0, period = gatherPeriod(pr); i < period; i++) map[i] = (i % pr) * kc + i / pr;
    }

    /**
     * Rows of B that {@link #packBRows} copies together into each panel: PACK_ROWS lines written one after another per
     * panel, from as many rows read side by side. Row by row, every row wrote one line into each of its panels, a panel
     * (kc x NR floats, 8-64 KB) apart. perf, 16 x 4096 x 2048 on 2 threads (AMD Zen, AVX2), jsloth's packing against
     * OpenBLAS's copy of the same operand in the same run: 2.8x its samples row by row, 1.46x by 8 rows, 1.54x by 128.
     * {@link #copyRowGroup} is unrolled for exactly 8 rows: change both together.
     */
    private static final int PACK_ROWS = 8;

    /**
     * Packs rows {@code [p0, p1)} of op(B)[.., jc..jc+nc] for a non-transposed B, in K blocks of depth {@code kcMax}
     * counted from row {@code from} (laid out as {@link #packedOffset}, depth 0 at row {@code from}; the last block ends
     * at row {@code k}): all of K from row 0, or one streamed block. An F32 row's whole panels are copied
     * {@link #PACK_ROWS} rows at a time, panel by panel (NR floats of each row per panel); the rest of a row (a short
     * last panel, or a row that needs converting) is read once, whole (one bulk copy), and cut into panels. This matters
     * when M is small (LoRA's dA = dYB^T X) and packing B is a large share of the work.
     */
    private static void packBRows(Matrix b, int p0, int p1, int from, int kcMax, int k, int jc, int nc, MemorySegment bp) {
        int panels = ceilDiv(nc, NR);
        // an F32 row's whole panels are read where they are, PACK_ROWS rows at a time; the rest of the row (a short last
        // panel, or all of a row that needs converting) goes through a heap copy, zero-padded
        int direct = b.codec() == ElementCodec.F32 ? nc / NR : 0;
        MemorySegment src = b.seg();
        long rowBytes = 4L * b.cols();
        for (int g = p0, ge; g < p1 && direct > 0; g = ge) {
            int pc = from + (g - from) / kcMax * kcMax, kc = Math.min(kcMax, k - pc);
            ge = Math.min(Math.min(p1, g + PACK_ROWS), pc + kc);
            long in0 = 4 * b.at(g, jc), to0 = 4L * (packedOffset(pc - from, 0, kc, panels) + (long) (g - pc) * NR), panelBytes = 4L * kc * NR;
            if (ge - g == PACK_ROWS) {
                copyRowGroup(src, in0, rowBytes, bp, to0, panelBytes, direct);
                continue;
            }
            for (int q = 0; q < direct; q++) { // a short group (a K block's last rows): row by row
                long in = in0 + 4L * q * NR, to = to0 + q * panelBytes;
                for (int p = g; p < ge; p++, in += rowBytes, to += 4L * NR) {
                    FloatVector.fromMemorySegment(SP, src, in, NATIVE).intoMemorySegment(bp, to, NATIVE);
                    FloatVector.fromMemorySegment(SP, src, in + 4L * L, NATIVE).intoMemorySegment(bp, to + 4L * L, NATIVE);
                }
            }
        }
        if (direct == panels) return;
        float[][] held = ROW_WIDE.get();
        if (held[0].length < panels * NR) held[0] = new float[panels * NR];
        float[] row = held[0];
        for (int p = p0; p < p1; p++) {
            int pc = from + (p - from) / kcMax * kcMax, kc = Math.min(kcMax, k - pc);
            b.codec().readFloats(src, b.at(p, jc + direct * NR), row, 0, nc - direct * NR);
            java.util.Arrays.fill(row, nc - direct * NR, (panels - direct) * NR, 0f);
            for (int q = direct; q < panels; q++) { // two vector stores per panel: MemorySegment.copy of 64 bytes cost ~10x more
                long to = 4L * (packedOffset(pc - from, q, kc, panels) + (long) (p - pc) * NR);
                FloatVector.fromArray(SP, row, (q - direct) * NR).intoMemorySegment(bp, to, NATIVE);
                FloatVector.fromArray(SP, row, (q - direct) * NR + L).intoMemorySegment(bp, to + 4L * L, NATIVE);
            }
        }
    }

    /**
     * Copies {@link #PACK_ROWS} (8) rows of B, {@code panels} whole panels of each, into the panels: panel q's 8 lines
     * (NR floats a row) go to {@code to0 + q * panelBytes}, one after another. Unrolled over the 8 rows, so that the loop
     * runs over the panels with B's offsets a constant step apart (C2 then drops their bounds checks) and writes
     * through one slice per panel (one check, where each store at a stride of {@code panelBytes} kept its own). The JIT's
     * loop is 16 loads and 16 stores with ~20 other instructions per 8 lines, where the loop over the rows took ~15
     * instructions a line (checks, stack reloads). The copy waits on memory (B is read once, for a short product from
     * DRAM), and fewer instructions per line keep more lines in flight: OpenBLAS's copy of the same operand (8 rows, one
     * vector of each, then 8 stores) spent half of jsloth's samples. 16 x 4096 x 2048, 2 threads, AMD Zen, one JVM
     * against OpenBLAS, three pairs of old and new alternating: 0.635-0.688x -> 0.699-0.825x.
     */
    private static void copyRowGroup(MemorySegment src, long in0, long rowBytes, MemorySegment bp, long to0, long panelBytes, int panels) {
        long r1 = in0 + rowBytes, r2 = r1 + rowBytes, r3 = r2 + rowBytes, r4 = r3 + rowBytes, r5 = r4 + rowBytes, r6 = r5 + rowBytes,
                r7 = r6 + rowBytes, line = 4L * NR, half = 4L * L;
        for (int q = 0; q < panels; q++) {
            long o = line * q;
            MemorySegment to = bp.asSlice(to0 + q * panelBytes, PACK_ROWS * line);
            FloatVector.fromMemorySegment(SP, src, in0 + o, NATIVE).intoMemorySegment(to, 0, NATIVE);
            FloatVector.fromMemorySegment(SP, src, in0 + o + half, NATIVE).intoMemorySegment(to, half, NATIVE);
            FloatVector.fromMemorySegment(SP, src, r1 + o, NATIVE).intoMemorySegment(to, line, NATIVE);
            FloatVector.fromMemorySegment(SP, src, r1 + o + half, NATIVE).intoMemorySegment(to, line + half, NATIVE);
            FloatVector.fromMemorySegment(SP, src, r2 + o, NATIVE).intoMemorySegment(to, 2 * line, NATIVE);
            FloatVector.fromMemorySegment(SP, src, r2 + o + half, NATIVE).intoMemorySegment(to, 2 * line + half, NATIVE);
            FloatVector.fromMemorySegment(SP, src, r3 + o, NATIVE).intoMemorySegment(to, 3 * line, NATIVE);
            FloatVector.fromMemorySegment(SP, src, r3 + o + half, NATIVE).intoMemorySegment(to, 3 * line + half, NATIVE);
            FloatVector.fromMemorySegment(SP, src, r4 + o, NATIVE).intoMemorySegment(to, 4 * line, NATIVE);
            FloatVector.fromMemorySegment(SP, src, r4 + o + half, NATIVE).intoMemorySegment(to, 4 * line + half, NATIVE);
            FloatVector.fromMemorySegment(SP, src, r5 + o, NATIVE).intoMemorySegment(to, 5 * line, NATIVE);
            FloatVector.fromMemorySegment(SP, src, r5 + o + half, NATIVE).intoMemorySegment(to, 5 * line + half, NATIVE);
            FloatVector.fromMemorySegment(SP, src, r6 + o, NATIVE).intoMemorySegment(to, 6 * line, NATIVE);
            FloatVector.fromMemorySegment(SP, src, r6 + o + half, NATIVE).intoMemorySegment(to, 6 * line + half, NATIVE);
            FloatVector.fromMemorySegment(SP, src, r7 + o, NATIVE).intoMemorySegment(to, 7 * line, NATIVE);
            FloatVector.fromMemorySegment(SP, src, r7 + o + half, NATIVE).intoMemorySegment(to, 7 * line + half, NATIVE);
        }
    }

    /**
     * Packs op(B)[pc..pc+kc, col..col+nr] (B stored transposed) as one panel {@code width} columns wide (NR, or L for
     * {@link #packBNarrow}), row-major inside, zero-padded, at float {@code base} of {@code bp}.
     */
    private static void packBTransposed(Matrix b, int pc, int kc, int col, int nr, int width, MemorySegment bp, long base) {
        float[] row = ROW.get(), st = STAGE.get();
        for (int j = 0; j < width; j++) {
            if (j < nr) {
                b.codec().readFloats(b.seg(), b.at(pc, col + j), row, 0, kc);
                for (int p = 0; p < kc; p++) st[p * width + j] = row[p];
            } else {
                for (int p = 0; p < kc; p++) st[p * width + j] = 0f;
            }
        }
        MemorySegment.copy(st, 0, bp, ElementCodec.FLOAT, 4 * base, kc * width);
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
    private static void accumulate(int lowK, MemorySegment lap, long lao, MemorySegment lbp, long lbo,
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
     * {@link #accumulate} for a short k block (under {@link #SLICED_MIN_K}) of a packed 6-row A panel with no low-rank
     * pair, for a product that overwrites C (every LoRA expansion): A read from the heap block ({@code as} from
     * {@code asAt}; broadcasts that C2 parses cheaply), and the whole 6 x NR tile stored as {@code alpha * tile} into C at
     * byte offset {@code co} (rows {@code ldc} bytes apart) straight from the registers. At such depths the tile's trip
     * through the heap and {@link #updateTile} was a large share of a call. Same sums in the same order as
     * {@link #accumulate} (the same bits). One JVM, against the session-23 code (plain kernel, then updateTile), batches of
     * ~20 products, medians of 9-11 rounds, 2 threads: 4096 x 2048 x 16 90.7 against 63.4 GFLOP/s, 1024 x 4096 x 16 90.7
     * against 61.3. A first form that also added into C, 12 loads and 24 stores on C spelled out and A read from the
     * segment, took C2 past its inlining cutoff in {@code bench --gemm} (the Vector API's Java fallbacks: 0.7 GFLOP/s).
     */
    private static void storeShort(int kc, float[] as, int asAt, MemorySegment bp, long bo, MemorySegment c, long co, long ldc,
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
     * 12 rows by one vector of B (packed a vector wide, {@link #packBNarrow}: L floats a k step from {@code bo}), A read
     * where it is (plain F32, rows {@code aRow} bytes apart from byte {@code ao}; a short last panel's rows from {@code rows} on read its first row again, and their sums are not
     * stored), for products whose N fits one vector (LoRA's {@code X A^T}, N = rank 16), where {@link #accumulate}'s
     * second column vector would be all padding: every FMA here is useful, and each k step loads one B vector for 12 A
     * values. Each row is a slice read at {@code 4 p}: with the row pitch as a parameter in the loop's addresses, C2 kept
     * a compare and a branch for each of the 12 reads (99 instructions a k step for 12 FMAs); one JVM, against that form,
     * medians of 15 rounds: 4096 x 16 x 2048 1.11-1.30x on 2 threads (1.37x on 1), 512 x 16 x 1408 1.19x, 31 x 16 x 4500
     * 1.58x (its short panel read in place, not packed); that form against the 6-row kernel had been 1.12-1.15x. Same sums
     * in the same order as {@link #accumulate} (bit-identical). Only with 512-bit vectors, where {@link #MR} is 12.
     */
    private static void accumulateNarrow(int kc, MemorySegment ap, long ao, long aRow, int rows, MemorySegment bp, long bo, float[] t) {
        long len = 4L * kc;
        MemorySegment a0 = ap.asSlice(ao, len), a1 = row(ap, ao, aRow, 1, rows, len), a2 = row(ap, ao, aRow, 2, rows, len);
        MemorySegment a3 = row(ap, ao, aRow, 3, rows, len), a4 = row(ap, ao, aRow, 4, rows, len), a5 = row(ap, ao, aRow, 5, rows, len);
        MemorySegment a6 = row(ap, ao, aRow, 6, rows, len), a7 = row(ap, ao, aRow, 7, rows, len), a8 = row(ap, ao, aRow, 8, rows, len);
        MemorySegment a9 = row(ap, ao, aRow, 9, rows, len), a10 = row(ap, ao, aRow, 10, rows, len), a11 = row(ap, ao, aRow, 11, rows, len);
        MemorySegment b = bp.asSlice(bo, 4L * L * kc);
        FloatVector c0 = FloatVector.zero(SP), c1 = FloatVector.zero(SP), c2 = FloatVector.zero(SP), c3 = FloatVector.zero(SP);
        FloatVector c4 = FloatVector.zero(SP), c5 = FloatVector.zero(SP), c6 = FloatVector.zero(SP), c7 = FloatVector.zero(SP);
        FloatVector c8 = FloatVector.zero(SP), c9 = FloatVector.zero(SP), c10 = FloatVector.zero(SP), c11 = FloatVector.zero(SP);
        for (int p = 0; p < kc; p++) {
            long ak = 4L * p;
            FloatVector bv = FloatVector.fromMemorySegment(SP, b, 4L * L * p, NATIVE);
            c0 = FloatVector.broadcast(SP, a0.get(PACKED, ak)).fma(bv, c0);
            c1 = FloatVector.broadcast(SP, a1.get(PACKED, ak)).fma(bv, c1);
            c2 = FloatVector.broadcast(SP, a2.get(PACKED, ak)).fma(bv, c2);
            c3 = FloatVector.broadcast(SP, a3.get(PACKED, ak)).fma(bv, c3);
            c4 = FloatVector.broadcast(SP, a4.get(PACKED, ak)).fma(bv, c4);
            c5 = FloatVector.broadcast(SP, a5.get(PACKED, ak)).fma(bv, c5);
            c6 = FloatVector.broadcast(SP, a6.get(PACKED, ak)).fma(bv, c6);
            c7 = FloatVector.broadcast(SP, a7.get(PACKED, ak)).fma(bv, c7);
            c8 = FloatVector.broadcast(SP, a8.get(PACKED, ak)).fma(bv, c8);
            c9 = FloatVector.broadcast(SP, a9.get(PACKED, ak)).fma(bv, c9);
            c10 = FloatVector.broadcast(SP, a10.get(PACKED, ak)).fma(bv, c10);
            c11 = FloatVector.broadcast(SP, a11.get(PACKED, ak)).fma(bv, c11);
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

    /** Row r of a panel whose rows start at ao, aRow bytes apart, as a slice of len bytes; row 0 where r is past rows. */
    private static MemorySegment row(MemorySegment ap, long ao, long aRow, int r, int rows, long len) {
        return ap.asSlice(r < rows ? ao + r * aRow : ao, len);
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
    private static void accumulatePacked(int lowK, float[] lowA, int lowAt, MemorySegment lowB, int kc, float[] as, int asAt, MemorySegment bs,
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
    private static void accumulatePackedFive(int lowK, float[] lowA, int lowAt, MemorySegment lowB, int kc, float[] as, int asAt,
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

    /** {@link #accumulatePackedFive} for a 4-row panel (a last block's first panels where MR is 5: {@link #panelHeight}). */
    private static void accumulatePackedFour(int lowK, float[] lowA, int lowAt, MemorySegment lowB, int kc, float[] as, int asAt,
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
     * of this call where {@link #readsAhead}, else this call's own panel again; the thread's A buffer where a low-rank
     * pair is too deep for the panel), summed into a vector stored past the tile so that the loads stay: one load a k
     * step, its line moving on every 4 steps, brings the panel into L2 while the FMAs run. The step is a constant so
     * that C2 can drop the load's bounds check (with the step a parameter, the JIT's loop kept a multiply, a compare
     * and a branch for it and five stack reloads: 62 instructions a k step against 55 now). A branch or a second kernel
     * for the products that need no read-ahead was what session 21 found fragile (a branch compiled as never taken by
     * the training step, then trapping; an int read sharing a polluted type profile): this is the same vector load as
     * B's, every time.
     */
    private static void accumulatePackedWide(int lowK, float[] lowA, int lowAt, MemorySegment lowB, int kc, float[] as, int asAt, MemorySegment bs,
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
    private static void updateTile(MemorySegment c, int ldc, int row, int col, int mr, int nr, float alpha, boolean store,
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
