package dev.jsloth.cpu;

import jdk.incubator.vector.FloatVector;

import java.lang.foreign.MemorySegment;

import static dev.jsloth.cpu.GemmMicrokernels.L;
import static dev.jsloth.cpu.GemmMicrokernels.NATIVE;
import static dev.jsloth.cpu.GemmMicrokernels.NR;
import static dev.jsloth.cpu.GemmMicrokernels.ROWS_MAX;
import static dev.jsloth.cpu.GemmMicrokernels.SP;
import static dev.jsloth.cpu.GemmMicrokernels.FIVE_ROWS;
import static dev.jsloth.cpu.GemmMicrokernels.FOUR_ROWS;
import static dev.jsloth.cpu.GemmMicrokernels.HALF;
import static dev.jsloth.cpu.GemmF32.KC;
import static dev.jsloth.cpu.GemmF32.KC_DIRECT_A;
import static dev.jsloth.cpu.GemmF32.MC;

/**
 * Packing for {@link GemmF32}: op(A) into row panels, k-major inside a panel ({@link #packA}: any storage type widened
 * to float, scaled on the way), and op(B) into column panels {@link GemmMicrokernels#NR} wide, K block after K block
 * ({@link #packB}, laid out as {@link #packedOffset}; {@link #packBRows} for a block of rows, {@link #packBNarrow} one
 * vector wide), zero-padded so that the microkernels never read past a panel.
 */
final class GemmPacking {
    private static final ThreadLocal<float[]> ROW = ThreadLocal.withInitial(() -> new float[Math.max(KC_DIRECT_A, MC)]);
    private static final ThreadLocal<float[][]> ROW_WIDE = ThreadLocal.withInitial(() -> new float[1][0]);
    /**
     * Heap staging: a B panel (element stores into the array, then one bulk copy off-heap), or a plain A panel's rows
     * before {@link #packPlainPanel} gathers them.
     */
    private static final ThreadLocal<float[]> STAGE = ThreadLocal.withInitial(() -> new float[Math.max(ROWS_MAX * Math.max(KC, KC_DIRECT_A), KC * NR)]);
    /** {@link #packPlainPanel}'s gather indices (one period: lcm(pr, L) <= pr * L). */
    private static final ThreadLocal<int[]> GATHER_MAP = ThreadLocal.withInitial(() -> new int[ROWS_MAX * L]);

    private GemmPacking() {
    }

    /** Float offset of panel q of the k block that starts at packed depth pc (kc deep): the blocks of K one after another. */
    static long packedOffset(int pc, int q, int kc, int panels) {
        return (long) pc * panels * NR + (long) q * kc * NR;
    }

    /**
     * B's panels of columns [jc, jc + nc) for all of K from its kept panels (a frozen tensor's, packed on first use), or
     * null where B keeps none or their budget is spent. Only a packed B keeps panels, so they are always in K blocks
     * of {@link GemmF32#KC}.
     */
    static MemorySegment keptPanels(Matrix b, int k, int jc, int nc) {
        if (b.panels() == null) return null;
        return b.panels().block(new PanelCache.Key(b.trans(), k, jc, nc), (long) k * Math.ceilDiv(nc, NR) * NR,
                into -> packB(b, k, jc, nc, into));
    }

    /** Packs op(B)[0..k, jc..jc+nc] for all of K in blocks of {@link GemmF32#KC} (see {@link #packedOffset}). */
    static void packB(Matrix b, int k, int jc, int nc, MemorySegment bs) {
        int panels = Math.ceilDiv(nc, NR);
        if (b.trans()) {
            int kBlocks = Math.ceilDiv(k, KC);
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
     * Packs op(B) (k x n, n at most one vector) for {@link GemmMicrokernels#accumulateNarrow}: k rows of {@link GemmMicrokernels#L} floats (zero past
     * n), the K blocks one after another, so a narrow product's B takes half the bytes of an NR-wide panel and stays in
     * L1 while A's rows stream by. In runs of as many depths as {@code STAGE} holds at L floats each (at most
     * {@code ROW}'s length); a transposed B (LoRA's A factor, {@code X A^T}) through {@link #packBTransposed} at width L.
     */
    static void packBNarrow(Matrix b, int k, int n, MemorySegment bs) {
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
     * panel of at most {@link GemmMicrokernels#HALF} rows is HALF high where pr is 12. A block of 88 rows (a 256-row product's last) is
     * then 7 x 12 + 6 rows, on the wide kernel but for the last panel; choosing one height per block, it had gone all
     * 6-row (90 rows computed rather than 96), and in a llama-25m step of 256 tokens the 6-row kernel took 20% of the
     * samples. Also 16 rows: 12 + 6 (as 6 + 6 + 6 earlier; 12 + 12 computed 24 and ran 16 x 4096 x 2048 at 1 / 1.19).
     * <p>
     * Where pr is 5 ({@link GemmMicrokernels#MR} with 256-bit vectors), 4 while the rows left are not a multiple of 5, so a block's 4-row
     * panels come first: every count from 12 rows on is then whole panels of 5 and 4 (16 = 4 x 4, a last block of 118
     * rows 4 + 4 + 22 x 5), and a smaller one pads at most 3 rows. Row blocks start on multiples of 5, so only a
     * product's last block takes 4-row panels. The 5- and 4-row kernels run at the same rate a row (37-38 GFLOP/s on one
     * AMD Zen core, alone); this replaced 6-row panels here (16 = 6 + 5 + 5), whose kernel keeps an accumulator on the
     * stack on AVX2 and ran ~22% slower a row in 16 x 4096 x 2048 (perf: 10.05% of the samples for 6 rows, 13.75% for 10
     * on the 5-row kernel).
     */
    static int panelHeight(int pr, int rowsLeft) {
        if (pr == FIVE_ROWS) return rowsLeft % FIVE_ROWS == 0 ? FIVE_ROWS : FOUR_ROWS;
        return pr > HALF && rowsLeft <= HALF ? HALF : pr;
    }

    /** Rows that {@link #packA} writes for mc rows in panels of {@link #panelHeight}(pr, ..): mc and the last panel's padding. */
    static int paddedRows(int pr, int mc) {
        int padded = 0;
        while (padded < mc) padded += panelHeight(pr, mc - padded);
        return padded;
    }

    /**
     * Packs {@code scale * op(A)[ic..ic+mc, pc..pc+kc]} as panels of {@link #panelHeight} rows (pr, the last one maybe
     * fewer, the first ones 4 where pr is 5), k-major inside a panel, panel after panel (the one at row ir at {@code ir * kc}), zero-padded (scale 1 is
     * exact), into {@code ap} from index {@code apAt} on; returns the floats written. A transposed A is read one stored row (all mc
     * values of one k) at a time, a plain one a panel at a time ({@link #packPlainPanel}).
     */
    static int packA(Matrix a, int ic, int mc, int pc, int kc, int pr, float scale, float[] ap, int apAt) {
        float[] row = ROW.get();
        int padded = paddedRows(pr, mc);
        if (a.trans()) {
            for (int p = 0; p < kc; p++) {
                a.codec().readFloats(a.seg(), a.at(ic, pc + p), row, 0, mc);
                java.util.Arrays.fill(row, mc, padded, 0f);
                for (int ir = 0, h; ir < mc; ir += h) {
                    h = panelHeight(pr, mc - ir);
                    int at = apAt + ir * kc + p * h;
                    for (int r = 0; r < h; r++) ap[at + r] = row[ir + r] * scale;
                }
            }
        } else {
            int[] map = GATHER_MAP.get();
            float[] st = STAGE.get();
            for (int ir = 0, h, mapped = 0; ir < mc; ir += h) {
                h = panelHeight(pr, mc - ir);
                if (h != mapped) gatherMap(mapped = h, kc, map);
                packPlainPanel(a, ic + ir, Math.min(h, mc - ir), pc, kc, h, scale, st, map, ap, apAt + ir * kc);
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
        if (pr == 12 && L == 16) {
            transposeTwelveRows(rows, kc, scale, ap, at);
            return;
        }
        int period = gatherPeriod(pr), total = pr * kc, i = 0;
        FloatVector s = FloatVector.broadcast(SP, scale);
        for (int depth = 0; i + period <= total; i += period, depth += period / pr)
            for (int v = 0; v < period; v += L)
                FloatVector.fromArray(SP, rows, depth, map, v).mul(s).intoArray(ap, at + i + v);
        for (; i < total; i++) ap[at + i] = rows[(i % pr) * kc + i / pr] * scale;
    }

    /**
     * {@link #packPlainPanel}'s transposition for 12-row panels of 16-lane vectors (the wide kernel's on AVX-512), all
     * in registers: 16 depths at a time, each group of 4 rows' vectors is transposed in each 128-bit part (two rounds of
     * two-vector lane selections: {@code tGJ}'s part q holds rows 4G..4G+3 at depth 4q + J), and then each output
     * vector (4 depths x 12 rows are 3 of them) is assembled from its four parts with three more selections
     * ({@code PART_PAIRS}). The gathers took 0.80 ns a float of a 96 x 1024 block in L2 (one Zen 5 core): 3.5% of
     * 2048^3 and 4.9% of the llama-25m training step's samples.
     */
    private static void transposeTwelveRows(float[] rows, int kc, float scale, float[] ap, int at) {
        FloatVector s = FloatVector.broadcast(SP, scale);
        int whole = kc - kc % L;
        for (int p = 0; p < whole; p += L) {
            // rows 0-3, 4-7, 8-11: tGJ's part q is rows 4G..4G+3 at depth 4q + J (vectors kept in locals: in an array
            // they were boxed, 1.8 ns a float)
            FloatVector a0 = load(rows, p, 0, kc, s), a1 = load(rows, p, 1, kc, s), a2 = load(rows, p, 2, kc, s), a3 = load(rows, p, 3, kc, s);
            FloatVector u0 = QUAD_LOW.selectFrom(a0, a1), u1 = QUAD_HIGH.selectFrom(a0, a1);
            FloatVector u2 = QUAD_LOW.selectFrom(a2, a3), u3 = QUAD_HIGH.selectFrom(a2, a3);
            FloatVector t00 = PAIR_LOW.selectFrom(u0, u2), t01 = PAIR_HIGH.selectFrom(u0, u2);
            FloatVector t02 = PAIR_LOW.selectFrom(u1, u3), t03 = PAIR_HIGH.selectFrom(u1, u3);
            a0 = load(rows, p, 4, kc, s); a1 = load(rows, p, 5, kc, s); a2 = load(rows, p, 6, kc, s); a3 = load(rows, p, 7, kc, s);
            u0 = QUAD_LOW.selectFrom(a0, a1); u1 = QUAD_HIGH.selectFrom(a0, a1);
            u2 = QUAD_LOW.selectFrom(a2, a3); u3 = QUAD_HIGH.selectFrom(a2, a3);
            FloatVector t10 = PAIR_LOW.selectFrom(u0, u2), t11 = PAIR_HIGH.selectFrom(u0, u2);
            FloatVector t12 = PAIR_LOW.selectFrom(u1, u3), t13 = PAIR_HIGH.selectFrom(u1, u3);
            a0 = load(rows, p, 8, kc, s); a1 = load(rows, p, 9, kc, s); a2 = load(rows, p, 10, kc, s); a3 = load(rows, p, 11, kc, s);
            u0 = QUAD_LOW.selectFrom(a0, a1); u1 = QUAD_HIGH.selectFrom(a0, a1);
            u2 = QUAD_LOW.selectFrom(a2, a3); u3 = QUAD_HIGH.selectFrom(a2, a3);
            FloatVector t20 = PAIR_LOW.selectFrom(u0, u2), t21 = PAIR_HIGH.selectFrom(u0, u2);
            FloatVector t22 = PAIR_LOW.selectFrom(u1, u3), t23 = PAIR_HIGH.selectFrom(u1, u3);
            // depths 4q..4q+3 are 12 quads, quad Q = tGJ's part q with G = Q % 3, J = Q / 3, 4 to an output vector
            for (int q = 0, out = at + p * 12; q < 4; q++, out += 3 * L) {
                FloatVector[] pair = PART_PAIRS[q];
                HALVES.selectFrom(pair[0].selectFrom(t00, t10), pair[1].selectFrom(t20, t01)).intoArray(ap, out);
                HALVES.selectFrom(pair[0].selectFrom(t11, t21), pair[1].selectFrom(t02, t12)).intoArray(ap, out + L);
                HALVES.selectFrom(pair[0].selectFrom(t22, t03), pair[1].selectFrom(t13, t23)).intoArray(ap, out + 2 * L);
            }
        }
        for (int p = whole; p < kc; p++)
            for (int r = 0; r < 12; r++) ap[at + p * 12 + r] = rows[r * kc + p] * scale;
    }

    private static FloatVector load(float[] rows, int p, int r, int kc, FloatVector scale) {
        return FloatVector.fromArray(SP, rows, r * kc + p).mul(scale);
    }

    /**
     * Lane selections of {@link #transposeTwelveRows} (indices into two vectors: L and up the second), per 128-bit part
     * (lanes 4q..4q+3): QUAD_LOW interleaves the first two lanes of a part of each vector (a0 b0 a1 b1), QUAD_HIGH the
     * last two (a2 b2 a3 b3); PAIR_LOW takes the first lane pair of each (a0 a1 b0 b1), PAIR_HIGH the second pair.
     */
    private static final FloatVector QUAD_LOW = partSelection(new int[]{0, 0, 1, 1}, new boolean[]{false, true, false, true});
    private static final FloatVector QUAD_HIGH = partSelection(new int[]{2, 2, 3, 3}, new boolean[]{false, true, false, true});
    private static final FloatVector PAIR_LOW = partSelection(new int[]{0, 1, 0, 1}, new boolean[]{false, false, true, true});
    private static final FloatVector PAIR_HIGH = partSelection(new int[]{2, 3, 2, 3}, new boolean[]{false, false, true, true});
    /** The first vector's lanes 0..L/2-1 and the second's L/2..L-1. */
    private static final FloatVector HALVES = laneSelection(i -> i < L / 2 ? i : L + i);
    /**
     * {@code PART_PAIRS[q]}: part q of two vectors into 128-bit parts 0 and 1 ([0]) or 2 and 3 ([1]) of the output
     * (16-lane vectors only; unused otherwise).
     */
    private static final FloatVector[][] PART_PAIRS = partPairs();

    private static FloatVector partSelection(int[] lane, boolean[] second) {
        return laneSelection(i -> (second[i % 4] ? L : 0) + i / 4 * 4 + lane[i % 4]);
    }

    private static FloatVector laneSelection(java.util.function.IntUnaryOperator source) {
        float[] idx = new float[L];
        for (int i = 0; i < L; i++) idx[i] = source.applyAsInt(i);
        return FloatVector.fromArray(SP, idx, 0);
    }

    private static FloatVector[][] partPairs() {
        FloatVector[][] pairs = new FloatVector[4][2];
        if (L != 16) return pairs;
        for (int q = 0; q < 4; q++)
            for (int h = 0; h < 2; h++) {
                int part = q, low = 2 * h; // output parts low and low + 1: the first vector's part q, the second's
                pairs[q][h] = laneSelection(i -> i / 4 == low + 1 ? L + 4 * part + i % 4 : 4 * part + i % 4);
            }
        return pairs;
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
    static void packBRows(Matrix b, int p0, int p1, int from, int kcMax, int k, int jc, int nc, MemorySegment bp) {
        int panels = Math.ceilDiv(nc, NR);
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

}
