package dev.jsloth.cpu;

import dev.jsloth.api.quant.Nf4;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * {@code C = alpha X W^T} (or {@code C += ...}) for a few rows of X and a frozen W stored {@code [n, k]}, F32, BF16 or NF4:
 * decoding's products (one token's activations against every weight, the LM head included). Each output is the dot
 * product of an X row with a stored row of W, read once, in its own layout and type, at the memory's speed. The packed
 * path ({@link GemmF32}) reads W's kept panels instead, or, where the panel cache's budget is spent (a model's F32 weights
 * past 1 GiB: tinyllama's 4.4 GB), packs all of W for every token. tinyllama-1.1b decoding on two Zen 3 cores (random
 * weights, greedy, KV cache): F32 weights 3.4-4.4 tokens/s against 0.6 before, BF16 weights 5.7-6.3 against 0.6; a
 * 16-token prompt to its first token 0.80-0.97 s against 2.15. llama-25m (its panels kept): 79-87 tokens/s against
 * 81-89, alike. A BF16 W is widened as it is read, two values from each int (the even-indexed ones shifted up, the odd
 * ones masked), against X's even and odd elements apart. An NF4 W (QLoRA's base weights, whose panels are never kept:
 * the packed path dequantized all of W for every token) is read as its codes, looked up in NF4's table a vector at a
 * time ({@link #dotsNf4}), for up to {@link #NF4_ROWS} rows: tinyllama-1.1b decoding with NF4 projections went from 0.4
 * to 4.0-4.5 tokens/s on two Zen 3 cores (an 8-token prompt to its first token from 2.8-3.3 s to 0.9-1.1), and runs at
 * 45 tokens/s on 16 AVX-512 Xeon cores (BF16 weights 32-33, F32 21-22 there).
 * <p>
 * The sums run in another order than the packed kernel's (vector lanes across k, then the lanes added from lane 0 up:
 * {@link #sumInOrder}), so a decoded
 * token's logits can differ in the last bits from the same position's in a whole-sequence forward; each output is
 * summed by one thread, in an order fixed by k alone, whatever the thread count.
 */
final class GemmFewRows {
    /** The most rows of X this path takes always: decoding (one row a sequence) and short batches of it. */
    static final int DECODING_ROWS = 4;
    /**
     * The most rows it takes where W's panels are not kept (the panel cache's budget spent): a short prompt's prefill,
     * which would pack all of W for the product. tinyllama-1.1b in F32, two Zen 3 cores, prompt then first token: 8
     * tokens 443 ms against 1,990 packing W; 32 tokens 1,136 against 2,162; 64 tokens 2,177 against 3,086.
     */
    static final int UNKEPT_ROWS = 64;
    /**
     * The most rows it takes for an NF4 W: it looks the codes up again for each pair of X rows, where the packed path
     * dequantizes W once. tinyllama-1.1b with NF4 projections, two Zen 3 cores, prompt to first token, this path /
     * packed: 16 tokens 3.35 / 3.98 s, 32 tokens 5.70 / 4.13 s.
     */
    static final int NF4_ROWS = 16;
    private static final VectorSpecies<Float> SP = FloatVector.SPECIES_PREFERRED;
    private static final VectorSpecies<Integer> INTS = IntVector.SPECIES_PREFERRED;
    private static final int L = SP.length();
    /** 4 L bytes of an NF4 row, 8 L codes, read as L ints of 8 codes each ({@link #dotsNf4}). */
    private static final VectorSpecies<Byte> CODE_BYTES = ByteVector.SPECIES_PREFERRED;
    /** Elements of an NF4 row one {@link #CODE_BYTES} vector holds. */
    private static final int NF4_CHUNK = 8 * L;
    /** NF4's 16 values as float bits, for the lookups of {@link #dotsNf4}. */
    private static final int[] CODE_BITS = new int[Nf4.CODE.length];

    static {
        for (int i = 0; i < CODE_BITS.length; i++) CODE_BITS[i] = Float.floatToRawIntBits(Nf4.CODE[i]);
    }
    private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** Rows of W a task takes at the least (4 at a time). */
    private static final int MIN_ROWS_A_TASK = 64;

    private GemmFewRows() {
    }

    /**
     * Whether {@link #multiply} takes {@code op(A) op(B)} with these operands: op(B) = W^T, W frozen, F32 or BF16, and
     * X of at most {@link #DECODING_ROWS} rows, or {@link #UNKEPT_ROWS} where W's panels are not kept; or W NF4 in whole
     * blocks a row ({@link #nf4Rows}) and X of at most {@link #NF4_ROWS} rows (prefill of a short prompt, and QLoRA
     * training's products on as few tokens).
     */
    static boolean takes(int m, int n, int k, Matrix b) {
        if (m > UNKEPT_ROWS || !b.trans() || k < 1) return false;
        if (nf4Rows(k, b)) return m <= NF4_ROWS; // never kept: the packed path dequantizes all of W for each product
        if (b.panels() == null) return false;
        if (b.codec() != ElementCodec.F32 && !(b.codec() == ElementCodec.BF16 && k % 2 == 0 && b.base() % 2 == 0)) return false;
        return m <= DECODING_ROWS || !b.panels().keeps(true, 4L * k * Math.ceilDiv(n, GemmMicrokernels.NR) * GemmMicrokernels.NR);
    }

    /**
     * An NF4 W whose rows are whole blocks ({@link Nf4#BLOCK} elements: each row's scales its own) where a vector holds
     * 8 or 16 floats (a vector of codes is then one block or two, and the code table one vector or two).
     */
    private static boolean nf4Rows(int k, Matrix b) {
        return b.codec() instanceof Nf4Codec && k % Nf4.BLOCK == 0 && b.base() % Nf4.BLOCK == 0 && (L == 8 || L == 16);
    }

    /** C (F32, row-major m x n) = or += alpha op(A) op(B), for operands {@link #takes} takes. */
    static void multiply(int m, int n, int k, float alpha, Matrix a, Matrix b, MemorySegment c, boolean overwrite) {
        boolean bf16 = b.codec() == ElementCodec.BF16;
        float[] scales = b.codec() instanceof Nf4Codec nf4 ? nf4.scales() : null;
        int stride = scales != null ? Math.ceilDiv(k, NF4_CHUNK) * NF4_CHUNK : k; // floats from one row of x to the next
        float[] x = scales != null ? codeOrderRows(m, k, stride, a) : rows(m, k, a, bf16);
        Parallel.forRange(Math.ceilDiv(n, 4), MIN_ROWS_A_TASK / 4, (lo, hi) -> {
            float[] sums = new float[8], lanes = new float[L];
            for (int g = lo; g < hi; g++) {
                int j = 4 * g, rows = Math.min(4, n - j);
                long w = b.base() + (long) j * k;
                for (int i = 0; i < m; i += 2) { // X's rows two at a time (each W vector loaded once for both), the last alone
                    int xo = i * stride, xo2 = i + 1 < m ? xo + stride : xo;
                    if (scales != null) dotsNf4(x, xo, xo2, k, b.seg(), w, rows, scales, sums, lanes);
                    else if (bf16) dotsBf16(x, xo, xo2, k, b.seg(), w, rows, sums, lanes);
                    else dotsF32(x, xo, xo2, k, b.seg(), w, rows, sums, lanes);
                    for (int t = 0; t < Math.min(2, m - i); t++)
                        for (int r = 0; r < rows; r++) {
                            long at = 4 * ((long) (i + t) * n + j + r);
                            float v = alpha * sums[4 * t + r];
                            c.set(FLOAT, at, overwrite ? v : c.get(FLOAT, at) + v);
                        }
                }
            }
        });
    }

    /**
     * op(A)'s m rows as floats, one after another (k each); for a BF16 W each row's even elements first, then its odd
     * ones, as {@link #dotsBf16} pairs them.
     */
    private static float[] rows(int m, int k, Matrix a, boolean deinterleave) {
        float[] x = new float[m * k];
        if (!a.trans()) for (int i = 0; i < m; i++) a.codec().readFloats(a.seg(), a.at(i, 0), x, i * k, k);
        else for (int i = 0; i < m; i++) for (int p = 0; p < k; p++) x[i * k + p] = (float) a.codec().get(a.seg(), a.at(i, p));
        if (!deinterleave) return x;
        float[] out = new float[m * k];
        int half = k / 2;
        for (int i = 0; i < m; i++)
            for (int q = 0; q < half; q++) {
                out[i * k + q] = x[i * k + 2 * q];
                out[i * k + half + q] = x[i * k + 2 * q + 1];
            }
        return out;
    }

    /**
     * op(A)'s m rows as floats, {@code stride} apart, in the order {@link #dotsNf4} meets an NF4 row's codes: each run of
     * {@link #NF4_CHUNK} elements as 8 runs of L, run c lane i holding element 8 i + c; zeros past k.
     */
    private static float[] codeOrderRows(int m, int k, int stride, Matrix a) {
        float[] plain = rows(m, k, a, false), x = new float[m * stride];
        for (int i = 0; i < m; i++)
            for (int p = 0; p < k; p++) {
                int chunk = p / NF4_CHUNK, at = p % NF4_CHUNK;
                x[i * stride + chunk * NF4_CHUNK + (at % 8) * L + at / 8] = plain[i * k + p];
            }
        return x;
    }

    /**
     * v's lanes added from lane 0 up, through {@code lanes} (L floats): the same order in every JIT tier, where
     * {@code reduceLanes(ADD)} associates one way when compiled and another when interpreted (the same product gave other
     * bits the second time on a 16-lane machine). A helper taking one vector is inlined (one taking eight was not, and C2
     * boxed them).
     */
    private static float sumInOrder(FloatVector v, float[] lanes) {
        v.intoArray(lanes, 0);
        float s = 0;
        for (int i = 0; i < L; i++) s += lanes[i];
        return s;
    }

    /**
     * sums[4 t + r] = (X row t) . (W's row r), t 0 for x[xo..xo + k) and 1 for x[xo2..xo2 + k), r < rows (at most 4; W's
     * rows from element w, F32, k apart; past rows re-read the last row, their sums unused). The accumulators are
     * reduced here, not in a helper taking them as arguments: that form made C2 box them (BF16 decoding of tinyllama-1.1b
     * at 1.4 tokens/s against 5.5).
     */
    private static void dotsF32(float[] x, int xo, int xo2, int k, MemorySegment seg, long w, int rows, float[] sums, float[] lanes) {
        long r0 = 4 * w, r1 = row(r0, 4L * k, 1, rows), r2 = row(r0, 4L * k, 2, rows), r3 = row(r0, 4L * k, 3, rows);
        FloatVector s0 = FloatVector.zero(SP), s1 = FloatVector.zero(SP), s2 = FloatVector.zero(SP), s3 = FloatVector.zero(SP);
        FloatVector u0 = FloatVector.zero(SP), u1 = FloatVector.zero(SP), u2 = FloatVector.zero(SP), u3 = FloatVector.zero(SP);
        int kv = k - k % L, p = 0;
        for (; p < kv; p += L) {
            FloatVector xv = FloatVector.fromArray(SP, x, xo + p), yv = FloatVector.fromArray(SP, x, xo2 + p);
            long off = 4L * p;
            FloatVector w0 = FloatVector.fromMemorySegment(SP, seg, r0 + off, ByteOrder.LITTLE_ENDIAN);
            FloatVector w1 = FloatVector.fromMemorySegment(SP, seg, r1 + off, ByteOrder.LITTLE_ENDIAN);
            s0 = w0.fma(xv, s0);
            u0 = w0.fma(yv, u0);
            s1 = w1.fma(xv, s1);
            u1 = w1.fma(yv, u1);
            FloatVector w2 = FloatVector.fromMemorySegment(SP, seg, r2 + off, ByteOrder.LITTLE_ENDIAN);
            FloatVector w3 = FloatVector.fromMemorySegment(SP, seg, r3 + off, ByteOrder.LITTLE_ENDIAN);
            s2 = w2.fma(xv, s2);
            u2 = w2.fma(yv, u2);
            s3 = w3.fma(xv, s3);
            u3 = w3.fma(yv, u3);
        }
        sums[0] = sumInOrder(s0, lanes);
        sums[1] = sumInOrder(s1, lanes);
        sums[2] = sumInOrder(s2, lanes);
        sums[3] = sumInOrder(s3, lanes);
        sums[4] = sumInOrder(u0, lanes);
        sums[5] = sumInOrder(u1, lanes);
        sums[6] = sumInOrder(u2, lanes);
        sums[7] = sumInOrder(u3, lanes);
        for (int r = 0; r < 4; r++) {
            long at = row(r0, 4L * k, r, rows);
            for (int q = p; q < k; q++) {
                float wq = seg.get(FLOAT, at + 4L * q);
                sums[r] = Math.fma(wq, x[xo + q], sums[r]);
                sums[4 + r] = Math.fma(wq, x[xo2 + q], sums[4 + r]);
            }
        }
    }

    /**
     * As {@link #dotsF32} for a BF16 W (k even, rows starting on an even element): each int holds an even-indexed value
     * (low half) and the odd one after it (high half); x's rows are stored deinterleaved ({@link #rows}).
     */
    private static void dotsBf16(float[] x, int xo, int xo2, int k, MemorySegment seg, long w, int rows, float[] sums, float[] lanes) {
        int half = k / 2;
        long r0 = 2 * w, r1 = row(r0, 2L * k, 1, rows), r2 = row(r0, 2L * k, 2, rows), r3 = row(r0, 2L * k, 3, rows);
        FloatVector s0 = FloatVector.zero(SP), s1 = FloatVector.zero(SP), s2 = FloatVector.zero(SP), s3 = FloatVector.zero(SP);
        FloatVector u0 = FloatVector.zero(SP), u1 = FloatVector.zero(SP), u2 = FloatVector.zero(SP), u3 = FloatVector.zero(SP);
        int qv = half - half % L, q = 0;
        for (; q < qv; q += L) { // L pairs: W's elements 2q .. 2q + 2L
            FloatVector xe = FloatVector.fromArray(SP, x, xo + q), xd = FloatVector.fromArray(SP, x, xo + half + q);
            FloatVector ye = FloatVector.fromArray(SP, x, xo2 + q), yd = FloatVector.fromArray(SP, x, xo2 + half + q);
            long off = 4L * q;
            IntVector p0 = IntVector.fromMemorySegment(INTS, seg, r0 + off, ByteOrder.LITTLE_ENDIAN);
            IntVector p1 = IntVector.fromMemorySegment(INTS, seg, r1 + off, ByteOrder.LITTLE_ENDIAN);
            FloatVector e0 = p0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), d0 = p0.lanewise(VectorOperators.AND, 0xFFFF0000).reinterpretAsFloats();
            FloatVector e1 = p1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), d1 = p1.lanewise(VectorOperators.AND, 0xFFFF0000).reinterpretAsFloats();
            s0 = d0.fma(xd, e0.fma(xe, s0));
            u0 = d0.fma(yd, e0.fma(ye, u0));
            s1 = d1.fma(xd, e1.fma(xe, s1));
            u1 = d1.fma(yd, e1.fma(ye, u1));
            IntVector p2 = IntVector.fromMemorySegment(INTS, seg, r2 + off, ByteOrder.LITTLE_ENDIAN);
            IntVector p3 = IntVector.fromMemorySegment(INTS, seg, r3 + off, ByteOrder.LITTLE_ENDIAN);
            FloatVector e2 = p2.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), d2 = p2.lanewise(VectorOperators.AND, 0xFFFF0000).reinterpretAsFloats();
            FloatVector e3 = p3.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), d3 = p3.lanewise(VectorOperators.AND, 0xFFFF0000).reinterpretAsFloats();
            s2 = d2.fma(xd, e2.fma(xe, s2));
            u2 = d2.fma(yd, e2.fma(ye, u2));
            s3 = d3.fma(xd, e3.fma(xe, s3));
            u3 = d3.fma(yd, e3.fma(ye, u3));
        }
        sums[0] = sumInOrder(s0, lanes);
        sums[1] = sumInOrder(s1, lanes);
        sums[2] = sumInOrder(s2, lanes);
        sums[3] = sumInOrder(s3, lanes);
        sums[4] = sumInOrder(u0, lanes);
        sums[5] = sumInOrder(u1, lanes);
        sums[6] = sumInOrder(u2, lanes);
        sums[7] = sumInOrder(u3, lanes);
        for (int r = 0; r < 4; r++) {
            long at = row(r0, 2L * k, r, rows);
            for (int i = q; i < half; i++) {
                long off = at + 4L * i;
                float we = bf16(seg, off), wd = bf16(seg, off + 2);
                sums[r] = Math.fma(wd, x[xo + half + i], Math.fma(we, x[xo + i], sums[r]));
                sums[4 + r] = Math.fma(wd, x[xo2 + half + i], Math.fma(we, x[xo2 + i], sums[4 + r]));
            }
        }
    }

    /**
     * As {@link #dotsBf16} for an NF4 W ({@link #nf4Rows}): byte q of a row holds its element 2q in the high nibble and
     * 2q + 1 in the low one, each a code of {@link Nf4#CODE} times its block's scale. A vector of 4 L bytes is read as L
     * ints, each holding 8 codes: shifted and masked, code c of every int (element 8 i + c of the run) is looked up in the
     * code table (one vector of 16, or two of 8) and meets x's run c, which {@link #codeOrderRows} laid out so. A run is
     * one block where vectors hold 8 floats, two (the lanes' halves) where they hold 16; its sums are scaled once. A
     * row's last vector may hold one block of two: its bytes past the row read as zeros, against x's zeros past k.
     */
    private static void dotsNf4(float[] x, int xo, int xo2, int k, MemorySegment seg, long w, int rows, float[] scales, float[] sums,
                                float[] lanes) {
        int half = k / 2, blocksARow = k / Nf4.BLOCK, firstBlock = (int) (w / Nf4.BLOCK);
        boolean pair = xo2 != xo; // one row of X (decoding a single sequence): the second row's sums are not formed
        IntVector table = IntVector.fromArray(INTS, CODE_BITS, 0), table2 = L == 8 ? IntVector.fromArray(INTS, CODE_BITS, 8) : table;
        VectorMask<Float> secondBlock = SP.indexInRange(-L / 2, L / 2); // lanes L/2 on: where a run is two blocks, the second
        for (int r = 0; r < rows; r++) { // a row at a time (X's rows from L1 again): four rows' sums would not fit the registers
            long at = w / 2 + (long) r * half;
            int scaleAt = firstBlock + r * blocksARow;
            FloatVector s = FloatVector.zero(SP), u = FloatVector.zero(SP);
            for (int q = 0, xc = 0; q < half; q += 4 * L, xc += NF4_CHUNK) { // 4 L bytes: 8 L elements
                ByteVector bytes = q + 4 * L <= half ? ByteVector.fromMemorySegment(CODE_BYTES, seg, at + q, ByteOrder.LITTLE_ENDIAN)
                        : ByteVector.fromMemorySegment(CODE_BYTES, seg, at + q, ByteOrder.LITTLE_ENDIAN, CODE_BYTES.indexInRange(0, half - q));
                IntVector v = bytes.reinterpretAsInts();
                FloatVector a = FloatVector.zero(SP), c = FloatVector.zero(SP);
                for (int code = 0; code < 8; code++) { // code 2b is byte b's high nibble, 2b + 1 its low one
                    int shift = 8 * (code / 2) + 4 * (1 - code % 2);
                    FloatVector wv = v.lanewise(VectorOperators.LSHR, shift).and(15).selectFrom(table, table2).reinterpretAsFloats();
                    a = wv.fma(FloatVector.fromArray(SP, x, xo + xc + code * L), a);
                    if (pair) c = wv.fma(FloatVector.fromArray(SP, x, xo2 + xc + code * L), c);
                }
                int block = scaleAt + q / (Nf4.BLOCK / 2);
                FloatVector scale = FloatVector.broadcast(SP, scales[block]);
                if (L == 16) scale = scale.blend(q + Nf4.BLOCK / 2 < half ? scales[block + 1] : 0f, secondBlock);
                s = a.fma(scale, s);
                u = c.fma(scale, u);
            }
            sums[r] = sumInOrder(s, lanes);
            sums[4 + r] = pair ? sumInOrder(u, lanes) : sums[r];
        }
    }

    /** Byte offset of W's row r of a group starting at {@code first}, rows {@code rowBytes} apart; past rows read the last. */
    private static long row(long first, long rowBytes, int r, int rows) {
        return first + rowBytes * Math.min(r, rows - 1);
    }

    private static float bf16(MemorySegment seg, long byteOffset) {
        return Float.intBitsToFloat((seg.get(SHORT, byteOffset) & 0xFFFF) << 16);
    }
}
