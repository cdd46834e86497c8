package dev.jsloth.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * Causal grouped-query attention for F32 and BF16 tensors, computed in single precision (F64 tensors go to
 * {@link AttentionF64}), one (batch, head) pair per task. Forward keeps only the
 * row log-sum-exp; backward rebuilds the probabilities from it (FlashAttention-2's recurrence). Backward tasks are
 * (batch, key/value head) pairs so that the query heads of one group, which share dK and dV, never race.
 *
 * <p>Queries go in blocks of {@link #QUERY_BLOCK} rows against every key the block's last row sees, so each product
 * ({@code Q K^T}, {@code P V}; in backward also {@code dO V^T}, {@code P^T dO}, {@code dS^T Q}, {@code dS K}) is a
 * small matrix product on {@link #multiply}'s register-blocked kernel, and the exponentials run over whole rows
 * ({@link VectorMath}). Keys a row does not see get probability 0. Key counts are rounded up to the kernel's column
 * width over zero-padded K/V copies, so only head dimensions that are not a multiple of that width ({@link #NR})
 * take a scalar column tail. Unlike a per-pair loop, keys a row does not see take part in the products with
 * probability 0, so an infinite or NaN value in such a key's K or V row (or dO row in backward) makes the result
 * NaN; finite inputs are unaffected.
 */
final class AttentionKernel {
    /** Query rows per block: the masked upper triangle of a block is wasted work, about QUERY_BLOCK / 2 per row. */
    static final int QUERY_BLOCK = 32;
    private static final VectorSpecies<Float> SP = FloatVector.SPECIES_PREFERRED;
    /** Columns of the product kernel's register block: two vectors. */
    private static final int NR = 2 * SP.length();

    private AttentionKernel() {
    }

    record Dims(int batch, int seq, int qHeads, int kvHeads, int headDim, int kvSeq) {
        int group() {
            return qHeads / kvHeads;
        }

        int offset() {
            return kvSeq - seq;
        }
    }

    /** Element index of row t of head h of batch b in a {@code [batch, len, heads, headDim]} tensor. */
    static long headRow(int b, int t, int h, int heads, int len, int hd) {
        return (((long) b * len + t) * heads + h) * hd;
    }

    /** Copies head h of batch b ({@code [len, headDim]}) out of a {@code [batch, len, heads, headDim]} tensor. */
    private static void gather(Buffer src, int b, int h, int heads, int len, int hd, float[] dst) {
        for (int t = 0; t < len; t++) src.codec().readFloats(src.seg(), headRow(b, t, h, heads, len, hd), dst, t * hd, hd);
    }

    private static void scatter(Buffer dst, int b, int h, int heads, int len, int hd, float[] src) {
        for (int t = 0; t < len; t++) dst.codec().writeFloats(dst.seg(), headRow(b, t, h, heads, len, hd), src, t * hd, hd);
    }

    /** Segment ids of batch row b (null without packing); only defined when kvSeq == seq. */
    static int[] segments(MemorySegment seg, int b, int seq) {
        if (seg == null) return null;
        int[] s = new int[seq];
        MemorySegment.copy(seg, CpuBackend.INT, (long) b * seq * 4, s, 0, seq);
        return s;
    }

    static boolean visible(int[] seg, int i, int j) {
        return j <= i && (seg == null || seg[i] == seg[j]);
    }

    /**
     * Tasks per chunk: at most four chunks per thread. Each chunk allocates its own work arrays (megabytes at long
     * sequences) and the (batch, head) tasks cost the same, so finer chunks would balance nothing.
     */
    static int tasksPerChunk(int tasks) {
        return Math.max(1, tasks / (4 * Parallel.THREADS));
    }

    /** n rounded up to the kernel's column width. */
    private static int padded(int n) {
        return (n + NR - 1) / NR * NR;
    }

    /** n rounded up to the kernel's column width, at most cap (the padded length of the arrays). */
    private static int padded(int n, int cap) {
        return Math.min(cap, padded(n));
    }

    /**
     * xT[c * ld + r] = x[r * ldx + c] for r < rows, c < cols: rows as columns, 16 rows at a time so that each column
     * run written is two cache lines (row by row, every write of a column landed in one of two L1 sets).
     */
    private static void transpose(float[] x, int ldx, int rows, int cols, float[] xT, int ld) {
        for (int r0 = 0; r0 < rows; r0 += 16) {
            int r1 = Math.min(rows, r0 + 16);
            for (int c = 0; c < cols; c++)
                for (int r = r0; r < r1; r++) xT[c * ld + r] = x[r * ldx + c];
        }
    }

    /**
     * C[m x n] = A[m x k] B[k x n] (or C += with {@code accumulate}); all row-major in arrays with leading dimensions
     * lda, ldb, ldc from offsets ao, bo, co; {@code rows4} is work space of at least 4 k floats. Blocks of 4 rows x
     * {@link #NR} columns live in registers across the whole k loop (8 accumulators, 2 loads of B and 4 broadcasts of
     * A per step, A's 4 rows interleaved into one array first: 30-33 vs 21-23 GFLOP/s per core in double precision,
     * reading them in place); leftover rows go one at a time, leftover columns (n not a multiple of NR) through a
     * scalar loop.
     */
    static void multiply(float[] a, int ao, int lda, float[] b, int bo, int ldb, float[] c, int co, int ldc,
                         int m, int n, int k, boolean accumulate, float[] rows4) {
        int nBlocks = n - n % NR, vl = SP.length();
        int i = 0;
        for (; i + 4 <= m; i += 4) {
            int a0 = ao + i * lda, c0 = co + i * ldc;
            for (int p = 0; p < k; p++) {
                rows4[4 * p] = a[a0 + p];
                rows4[4 * p + 1] = a[a0 + lda + p];
                rows4[4 * p + 2] = a[a0 + 2 * lda + p];
                rows4[4 * p + 3] = a[a0 + 3 * lda + p];
            }
            for (int j = 0; j < nBlocks; j += NR) {
                FloatVector c00, c01, c10, c11, c20, c21, c30, c31;
                c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = FloatVector.zero(SP);
                int bp = bo + j;
                for (int p = 0; p < k; p++, bp += ldb) {
                    FloatVector b0 = FloatVector.fromArray(SP, b, bp), b1 = FloatVector.fromArray(SP, b, bp + vl);
                    FloatVector x = FloatVector.broadcast(SP, rows4[4 * p]);
                    c00 = b0.fma(x, c00);
                    c01 = b1.fma(x, c01);
                    x = FloatVector.broadcast(SP, rows4[4 * p + 1]);
                    c10 = b0.fma(x, c10);
                    c11 = b1.fma(x, c11);
                    x = FloatVector.broadcast(SP, rows4[4 * p + 2]);
                    c20 = b0.fma(x, c20);
                    c21 = b1.fma(x, c21);
                    x = FloatVector.broadcast(SP, rows4[4 * p + 3]);
                    c30 = b0.fma(x, c30);
                    c31 = b1.fma(x, c31);
                }
                store(c00, c01, c, c0 + j, accumulate);
                store(c10, c11, c, c0 + ldc + j, accumulate);
                store(c20, c21, c, c0 + 2 * ldc + j, accumulate);
                store(c30, c31, c, c0 + 3 * ldc + j, accumulate);
            }
        }
        for (; i < m; i++) {
            int a0 = ao + i * lda, c0 = co + i * ldc;
            for (int j = 0; j < nBlocks; j += NR) {
                FloatVector c00 = FloatVector.zero(SP), c01 = FloatVector.zero(SP);
                int bp = bo + j;
                for (int p = 0; p < k; p++, bp += ldb) {
                    FloatVector x = FloatVector.broadcast(SP, a[a0 + p]);
                    c00 = FloatVector.fromArray(SP, b, bp).fma(x, c00);
                    c01 = FloatVector.fromArray(SP, b, bp + vl).fma(x, c01);
                }
                store(c00, c01, c, c0 + j, accumulate);
            }
        }
        for (int r = 0; r < m && nBlocks < n; r++)
            for (int j = nBlocks; j < n; j++) {
                float sum = 0; // from 0, then added to C, as the vector blocks do (results independent of the vector width)
                for (int p = 0; p < k; p++) sum = Math.fma(a[ao + r * lda + p], b[bo + p * ldb + j], sum);
                c[co + r * ldc + j] = accumulate ? c[co + r * ldc + j] + sum : sum;
            }
    }

    /** Two vectors of a C row at c[at..]: stored, or added to what is there. */
    private static void store(FloatVector lo, FloatVector hi, float[] c, int at, boolean accumulate) {
        int vl = SP.length();
        if (accumulate) {
            lo = lo.add(FloatVector.fromArray(SP, c, at));
            hi = hi.add(FloatVector.fromArray(SP, c, at + vl));
        }
        lo.intoArray(c, at);
        hi.intoArray(c, at + vl);
    }

    static void forward(Dims d, Buffer q, Buffer k, Buffer v, MemorySegment segs, double scale, Buffer out, Buffer lse) {
        int T = d.seq(), S = d.kvSeq(), hd = d.headDim(), off = d.offset(), sp = padded(S);
        Parallel.forRange(d.batch() * d.qHeads(), AttentionKernel.tasksPerChunk(d.batch() * d.qHeads()), (lo, hi) -> {
            float[] qh = new float[T * hd], kh = new float[S * hd], kT = new float[hd * sp], vh = new float[sp * hd];
            float[] oh = new float[T * hd], p = new float[QUERY_BLOCK * sp], rowMax = new float[QUERY_BLOCK];
            float[] rows4 = new float[4 * Math.max(hd, sp)];
            float fs = (float) scale;
            for (int task = lo; task < hi; task++) {
                int b = task / d.qHeads(), h = task % d.qHeads(), g = h / d.group();
                int[] seg = segments(segs, b, T);
                gather(q, b, h, d.qHeads(), T, hd, qh);
                gather(k, b, g, d.kvHeads(), S, hd, kh);
                gather(v, b, g, d.kvHeads(), S, hd, vh); // rows past S stay zero
                transpose(kh, hd, S, hd, kT, sp);
                for (int i0 = 0; i0 < T; i0 += QUERY_BLOCK) {
                    int rows = Math.min(QUERY_BLOCK, T - i0), keys = padded(i0 + rows + off, sp);
                    multiply(qh, i0 * hd, hd, kT, 0, sp, p, 0, sp, rows, keys, hd, false, rows4);
                    for (int r = 0; r < rows; r++) {
                        int last = i0 + r + off, o = r * sp;
                        float mx = Float.NEGATIVE_INFINITY;
                        for (int j = 0; j < keys; j++) {
                            if (!visible(seg, last, j)) {
                                p[o + j] = Float.NEGATIVE_INFINITY; // exp gives 0
                                continue;
                            }
                            p[o + j] *= fs;
                            if (p[o + j] > mx) mx = p[o + j];
                        }
                        for (int j = 0; j < keys; j++) p[o + j] -= mx;
                        VectorMath.expInPlace(p, o, keys);
                        rowMax[r] = mx;
                    }
                    multiply(p, 0, sp, vh, 0, hd, oh, i0 * hd, hd, rows, hd, keys, false, rows4);
                    for (int r = 0; r < rows; r++) {
                        float sum = VectorMath.sum(p, r * sp, keys);
                        float inv = 1f / sum;
                        for (int c = 0; c < hd; c++) oh[(i0 + r) * hd + c] *= inv;
                        lse.set(((long) b * d.qHeads() + h) * T + i0 + r, rowMax[r] + StrictMath.log(sum));
                    }
                }
                scatter(out, b, h, d.qHeads(), T, hd, oh);
            }
        });
    }

    static void backward(Dims d, Buffer dOut, Buffer q, Buffer k, Buffer v, MemorySegment segs, double scale,
                         Buffer out, Buffer lse, Buffer dq, Buffer dk, Buffer dv) {
        int T = d.seq(), hd = d.headDim(), tp = padded(T), bq = QUERY_BLOCK;
        Parallel.forRange(d.batch() * d.kvHeads(), AttentionKernel.tasksPerChunk(d.batch() * d.kvHeads()), (lo, hi) -> {
            int n = T * hd;
            float[] qh = new float[n], oh = new float[n], doh = new float[n], dqh = new float[n];
            float[] kh = new float[tp * hd], vh = new float[tp * hd], kT = new float[hd * tp], vT = new float[hd * tp];
            float[] dkh = new float[tp * hd], dvh = new float[tp * hd];
            float[] p = new float[bq * tp], ds = new float[bq * tp], pT = new float[tp * bq], dsT = new float[tp * bq];
            float[] rows4 = new float[4 * Math.max(hd, tp)];
            float[] rowLse = new float[T];
            float fs = (float) scale;
            for (int task = lo; task < hi; task++) {
                int b = task / d.kvHeads(), g = task % d.kvHeads();
                int[] seg = segments(segs, b, T);
                gather(k, b, g, d.kvHeads(), T, hd, kh); // rows past T stay zero
                gather(v, b, g, d.kvHeads(), T, hd, vh);
                transpose(kh, hd, T, hd, kT, tp);
                transpose(vh, hd, T, hd, vT, tp);
                Arrays.fill(dkh, 0);
                Arrays.fill(dvh, 0);
                for (int h = g * d.group(); h < (g + 1) * d.group(); h++) {
                    gather(q, b, h, d.qHeads(), T, hd, qh);
                    gather(out, b, h, d.qHeads(), T, hd, oh);
                    gather(dOut, b, h, d.qHeads(), T, hd, doh);
                    lse.codec().readFloats(lse.seg(), ((long) b * d.qHeads() + h) * T, rowLse, 0, T);
                    for (int i0 = 0; i0 < T; i0 += bq) {
                        int rows = Math.min(bq, T - i0), keys = padded(i0 + rows, tp);
                        multiply(qh, i0 * hd, hd, kT, 0, tp, p, 0, tp, rows, keys, hd, false, rows4);
                        multiply(doh, i0 * hd, hd, vT, 0, tp, ds, 0, tp, rows, keys, hd, false, rows4);
                        for (int r = 0; r < rows; r++) {
                            int i = i0 + r, o = r * tp;
                            float lseI = rowLse[i];
                            for (int j = 0; j < keys; j++)
                                p[o + j] = visible(seg, i, j) ? p[o + j] * fs - lseI : Float.NEGATIVE_INFINITY;
                            VectorMath.expInPlace(p, o, keys); // the probabilities; 0 where not visible
                            float deltaI = dot(doh, oh, i * hd, hd);
                            for (int j = 0; j < keys; j++) ds[o + j] = p[o + j] * (ds[o + j] - deltaI) * fs;
                        }
                        transpose(p, tp, rows, keys, pT, bq);
                        transpose(ds, tp, rows, keys, dsT, bq);
                        multiply(pT, 0, bq, doh, i0 * hd, hd, dvh, 0, hd, keys, hd, rows, true, rows4);
                        multiply(dsT, 0, bq, qh, i0 * hd, hd, dkh, 0, hd, keys, hd, rows, true, rows4);
                        multiply(ds, 0, tp, kh, 0, hd, dqh, i0 * hd, hd, rows, hd, keys, false, rows4);
                    }
                    scatter(dq, b, h, d.qHeads(), T, hd, dqh);
                }
                scatter(dk, b, g, d.kvHeads(), T, hd, dkh);
                scatter(dv, b, g, d.kvHeads(), T, hd, dvh);
            }
        });
    }

    /** a[at..at+n) . b[at..at+n), in vector lanes added left to right. */
    private static float dot(float[] a, float[] b, int at, int n) {
        FloatVector acc = FloatVector.zero(SP);
        int c = 0;
        for (int end = SP.loopBound(n); c < end; c += SP.length())
            acc = FloatVector.fromArray(SP, a, at + c).fma(FloatVector.fromArray(SP, b, at + c), acc);
        float s = 0;
        for (float l : acc.toArray()) s += l;
        for (; c < n; c++) s = Math.fma(a[at + c], b[at + c], s);
        return s;
    }
}
