package dev.jsloth.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * Causal grouped-query attention for F32 and BF16 tensors, computed in single precision (F64 tensors go to
 * {@link AttentionF64}), one (batch, head) pair per task. Forward keeps only the
 * row log-sum-exp; backward rebuilds the probabilities from it (FlashAttention-2's recurrence). Backward tasks are
 * (batch, key/value head) pairs so that the query heads of one group, which share dK and dV, never race.
 *
 * <p>Queries go in blocks against every key the block's last row sees, so each product is a small matrix product on
 * {@link #multiply}'s register-blocked kernel, which reads its A by rows where they lie, and the exponentials run over
 * whole blocks ({@link VectorMath}). Forward: blocks of {@link #QUERY_BLOCK} queries, {@code S = Q K^T} and
 * {@code O = P V}, key counts rounded up to the kernel's column width ({@link #NR}) over zero-padded panels of K^T and
 * V made once per head. Backward: blocks of NR queries, every product transposed so that its A is a matrix's rows and a
 * block's scores are one B panel: {@code S^T = K Q^T}, {@code dP^T = V dO^T}, then {@code dV += P^T dO},
 * {@code dK += dS^T Q}, {@code dQ^T = K^T dS^T}. Against the row-wise backward, whose transposed products copied P and
 * dS a 4-row strip at a time (and Q, dO and dS likewise), one JVM alternating, 2 x 256 tokens: 4.07 -> 3.54 and
 * 3.90 -> 3.51 ms, 8 x 256 21.3 -> 17.6 ms, 1 x 1024 15.5 -> 8.5 ms (forward, its A rows no longer copied either:
 * 2.18 -> 1.85, 11.0 -> 8.9, 6.6 -> 4.6 ms), the same bits with 512-bit vectors (NR = 32 queries, as the row-wise
 * blocks had; with 256-bit vectors, 16-query blocks group dK's and dV's sums differently, within float rounding). Keys
 * a query does not see get probability 0; unlike a per-pair loop they take part in the products, so an infinite or NaN
 * value in such a key's K or V row (or a dO row in backward) makes the result NaN; finite inputs are unaffected.
 */
final class AttentionKernel {
    /** Query rows per forward block: the masked upper triangle of a block is wasted work, about QUERY_BLOCK / 2 per row. */
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
     * Tasks per chunk: at most four chunks per thread. The (batch, head) tasks cost the same, so finer chunks would
     * balance nothing.
     */
    static int tasksPerChunk(int tasks) {
        return Math.max(1, tasks / (4 * Parallel.THREADS));
    }

    /**
     * Each thread's work arrays, by slot (one per array of a pass: forward's from 0, backward's from
     * {@link #BACKWARD_SLOTS}), kept from call to call. Allocated (so zeroed) per chunk, as they were before, forward's ten
     * arrays took 15% of a llama-25m forward at 2 x 256 tokens (2.0 -> 1.7 ms, backward 3.8 -> 3.6, one JVM alternating).
     * They grow to the largest call seen, each up to {@link #WORK_KEPT_FLOATS}; what a call reads of them it wrote, but
     * for the columns of a plain panel past the matrix, which only reach outputs that are never stored ({@link #panels}).
     */
    private static final ThreadLocal<float[][]> WORK = ThreadLocal.withInitial(() -> new float[32][]);
    private static final int BACKWARD_SLOTS = 16;
    /**
     * The largest work array a thread keeps (1 MB: sequences of 4,096 at head dimension 64, 2,048 at 128); larger ones are
     * allocated per chunk, so a long call does not leave its arrays (tens of MB a thread) behind.
     */
    private static final int WORK_KEPT_FLOATS = 1 << 18;

    /** This thread's work array in {@code slot}, at least {@code size} floats, its contents left from earlier calls. */
    private static float[] work(int slot, int size) {
        if (size > WORK_KEPT_FLOATS) return new float[size];
        float[][] w = WORK.get();
        if (w[slot] == null || w[slot].length < size) w[slot] = new float[size];
        return w[slot];
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
     * Column panels of X (row-major {@code rows x cols}, leading dimension ld) or, with {@code transposed}, of X^T: panel
     * q holds columns {@code [q NR, q NR + NR)} of that matrix as a row-major {@code depth x NR} block,
     * {@code xP[q * depth * NR + r * NR + c]}, for its rows {@code r < depth}. Every B operand of {@link #multiply} is
     * laid out so, which makes its k loop step by the constant NR. Zeros go where the matrix ends and the products
     * read on (a transposed X's rows up to the last panel's end: key columns; a plain X's rows up to depth: keys, which
     * meet probability 0 and must not be NaN); a plain X's last panel past its columns is left as it is (those
     * columns of a product are never stored).
     */
    private static void panels(float[] x, int ld, int rows, int cols, boolean transposed, int depth, float[] xP) {
        if (transposed) { // X^T's row p is X's column p: X's row r fills column r of X^T, NR floats apart
            for (int r = 0, end = padded(rows); r < end; r++) {
                int at = (r / NR) * depth * NR + r % NR;
                if (r < rows) for (int p = 0; p < cols; p++) xP[at + p * NR] = x[r * ld + p];
                else for (int p = 0; p < cols; p++) xP[at + p * NR] = 0f;
            }
        } else {
            for (int r = 0; r < depth; r++)
                for (int q = 0; q * NR < cols; q++) {
                    int to = q * depth * NR + r * NR, w = Math.min(NR, cols - q * NR);
                    if (r < rows) System.arraycopy(x, r * ld + q * NR, xP, to, w);
                    else Arrays.fill(xP, to, to + w, 0f);
                }
        }
    }

    /**
     * C[m x n] = A[m x k] B[k x n] (or C += with {@code accumulate}): A row-major, read where it is (row i at
     * {@code a[ao + i * aRow ..]}), B as {@link #panels}, {@code B[p][j] = bP[bo + (j / NR) * bPanel + p * NR + j % NR]}, C
     * row-major. Every operand is laid out so that A's rows are rows (the backward pass forms the transposed products,
     * {@code S^T = K Q^T} and so on, to that end), so no A is copied. Each strip of 4 rows of A runs against each panel
     * on {@link #block}; in a short last strip the missing rows read its first row again, and their sums are not stored.
     * Rows past m and columns past n are computed and not stored (a partial block goes through {@code tile}, 4 NR
     * floats).
     */
    static void multiply(float[] a, int ao, int aRow, float[] bP, int bo, int bPanel, float[] c, int co, int ldc,
                         int m, int n, int k, boolean accumulate, float[] tile) {
        for (int i = 0; i < m; i += 4) {
            int rows = Math.min(4, m - i), r0 = ao + i * aRow;
            int r1 = rows > 1 ? r0 + aRow : r0, r2 = rows > 2 ? r0 + 2 * aRow : r0, r3 = rows > 3 ? r0 + 3 * aRow : r0;
            for (int j = 0; j < n; j += NR)
                block(a, r0, r1, r2, r3, bP, bo + j / NR * bPanel, k, c, co + i * ldc + j, ldc, rows, Math.min(NR, n - j), accumulate, tile);
        }
    }

    /**
     * The register-blocked kernel: 4 rows x {@link #NR} columns in 8 accumulators across the whole k loop, each step 2
     * loads of B's panel and 4 broadcasts, one from each of A's rows (at {@code r0 + p} .. {@code r3 + p}). All indices
     * step by constants (NR, 1), so the JIT drops the array range checks inside the loop: with B read at a variable row
     * pitch it kept four checks a step and spilled the pitches, 25 instructions a step for 8 FMAs. Then
     * {@code rows x cols} of the block go to C.
     */
    private static void block(float[] a, int r0, int r1, int r2, int r3, float[] bP, int bo, int k, float[] c, int at, int ldc,
                              int rows, int cols, boolean accumulate, float[] tile) {
        FloatVector c00, c01, c10, c11, c20, c21, c30, c31;
        c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = FloatVector.zero(SP);
        int vl = SP.length();
        for (int p = 0; p < k; p++) {
            FloatVector b0 = FloatVector.fromArray(SP, bP, bo + p * NR), b1 = FloatVector.fromArray(SP, bP, bo + p * NR + vl);
            FloatVector x = FloatVector.broadcast(SP, a[r0 + p]);
            c00 = b0.fma(x, c00);
            c01 = b1.fma(x, c01);
            x = FloatVector.broadcast(SP, a[r1 + p]);
            c10 = b0.fma(x, c10);
            c11 = b1.fma(x, c11);
            x = FloatVector.broadcast(SP, a[r2 + p]);
            c20 = b0.fma(x, c20);
            c21 = b1.fma(x, c21);
            x = FloatVector.broadcast(SP, a[r3 + p]);
            c30 = b0.fma(x, c30);
            c31 = b1.fma(x, c31);
        }
        if (rows == 4 && cols == NR) {
            store(c00, c01, c, at, accumulate);
            store(c10, c11, c, at + ldc, accumulate);
            store(c20, c21, c, at + 2 * ldc, accumulate);
            store(c30, c31, c, at + 3 * ldc, accumulate);
            return;
        }
        c00.intoArray(tile, 0);
        c01.intoArray(tile, vl);
        c10.intoArray(tile, NR);
        c11.intoArray(tile, NR + vl);
        c20.intoArray(tile, 2 * NR);
        c21.intoArray(tile, 2 * NR + vl);
        c30.intoArray(tile, 3 * NR);
        c31.intoArray(tile, 3 * NR + vl);
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < cols; j++) c[at + r * ldc + j] = accumulate ? c[at + r * ldc + j] + tile[r * NR + j] : tile[r * NR + j];
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
            float[] qh = work(0, T * hd), kh = work(1, S * hd), vh = work(2, S * hd), oh = work(3, T * hd);
            float[] kP = work(4, sp * hd), vP = work(5, padded(hd) * sp); // K^T's panels (keys), V's (columns)
            float[] p = work(6, QUERY_BLOCK * sp), rowMax = work(7, QUERY_BLOCK);
            float[] tile = work(8, 4 * NR);
            float fs = (float) scale;
            for (int task = lo; task < hi; task++) {
                int b = task / d.qHeads(), h = task % d.qHeads(), g = h / d.group();
                int[] seg = segments(segs, b, T);
                gather(q, b, h, d.qHeads(), T, hd, qh);
                gather(k, b, g, d.kvHeads(), S, hd, kh);
                gather(v, b, g, d.kvHeads(), S, hd, vh);
                panels(kh, hd, S, hd, true, hd, kP);
                panels(vh, hd, S, hd, false, sp, vP); // rows past S written as zeros
                for (int i0 = 0; i0 < T; i0 += QUERY_BLOCK) {
                    int rows = Math.min(QUERY_BLOCK, T - i0), keys = padded(i0 + rows + off, sp);
                    multiply(qh, i0 * hd, hd, kP, 0, hd * NR, p, 0, sp, rows, keys, hd, false, tile);
                    for (int r = 0; r < rows; r++) {
                        int last = i0 + r + off, o = r * sp;
                        float mx = Float.NEGATIVE_INFINITY;
                        if (seg == null) { // keys 0..last: a prefix of the row
                            int seen = Math.min(keys, last + 1);
                            mx = scaleAndMax(p, o, seen, fs);
                            Arrays.fill(p, o + seen, o + keys, Float.NEGATIVE_INFINITY); // exp gives 0
                        } else {
                            for (int j = 0; j < keys; j++) {
                                if (!visible(seg, last, j)) {
                                    p[o + j] = Float.NEGATIVE_INFINITY;
                                    continue;
                                }
                                p[o + j] *= fs;
                                if (p[o + j] > mx) mx = p[o + j];
                            }
                        }
                        scaleAndShift(p, o, keys, 1f, mx); // x * 1 is exact: p - mx
                        VectorMath.expInPlace(p, o, keys);
                        rowMax[r] = mx;
                    }
                    multiply(p, 0, sp, vP, 0, sp * NR, oh, i0 * hd, hd, rows, hd, keys, false, tile);
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
        // query blocks one panel wide, so that a block's S^T, P^T, dP^T and dS^T (keys x block) are each one B panel
        int T = d.seq(), hd = d.headDim(), tp = padded(T), hp = padded(hd);
        Parallel.forRange(d.batch() * d.kvHeads(), AttentionKernel.tasksPerChunk(d.batch() * d.kvHeads()), (lo, hi) -> {
            int n = T * hd, w = BACKWARD_SLOTS;
            float[] qh = work(w, n), oh = work(w + 1, n), doh = work(w + 2, n), dqh = work(w + 3, n);
            float[] kh = work(w + 4, n), vh = work(w + 5, n), dkh = work(w + 6, n), dvh = work(w + 7, n);
            // K^T (hd x T, row-major); Q's and dO's panels (columns); Q^T's and dO^T's panels (queries)
            float[] kT = work(w + 8, n), qP = work(w + 9, hp * T), doP = work(w + 10, hp * T);
            float[] qTP = work(w + 11, tp * hd), doTP = work(w + 12, tp * hd);
            // a block's P^T and dS^T (keys x NR, row-major: one panel), its dQ^T (hd x NR)
            float[] pT = work(w + 13, T * NR), dsT = work(w + 14, T * NR), dqT = work(w + 15, hd * NR);
            float[] tile = new float[4 * NR], rowLse = new float[tp], delta = new float[tp];
            float fs = (float) scale;
            for (int task = lo; task < hi; task++) {
                int b = task / d.kvHeads(), g = task % d.kvHeads();
                int[] seg = segments(segs, b, T);
                gather(k, b, g, d.kvHeads(), T, hd, kh);
                gather(v, b, g, d.kvHeads(), T, hd, vh);
                for (int j = 0; j < T; j++)
                    for (int c = 0; c < hd; c++) kT[c * T + j] = kh[j * hd + c];
                Arrays.fill(dkh, 0, n, 0f);
                Arrays.fill(dvh, 0, n, 0f);
                for (int h = g * d.group(); h < (g + 1) * d.group(); h++) {
                    gather(q, b, h, d.qHeads(), T, hd, qh);
                    gather(out, b, h, d.qHeads(), T, hd, oh);
                    gather(dOut, b, h, d.qHeads(), T, hd, doh);
                    lse.codec().readFloats(lse.seg(), ((long) b * d.qHeads() + h) * T, rowLse, 0, T);
                    for (int i = 0; i < T; i++) delta[i] = dot(doh, oh, i * hd, hd);
                    panels(qh, hd, T, hd, false, T, qP);
                    panels(doh, hd, T, hd, false, T, doP);
                    panels(qh, hd, T, hd, true, hd, qTP); // queries past T: zero columns
                    panels(doh, hd, T, hd, true, hd, doTP);
                    for (int i0 = 0; i0 < T; i0 += NR) {
                        int rows = Math.min(NR, T - i0), keys = i0 + rows; // the keys the block's queries can see
                        int qPanel = i0 / NR * hd * NR;
                        // S^T = K Q^T and dP^T = V dO^T for the block's queries (its columns; past T zero queries)
                        multiply(kh, 0, hd, qTP, qPanel, hd * NR, pT, 0, NR, keys, NR, hd, false, tile);
                        multiply(vh, 0, hd, doTP, qPanel, hd * NR, dsT, 0, NR, keys, NR, hd, false, tile);
                        transposedSoftmax(pT, dsT, keys, i0, rows, seg, fs, rowLse, delta);
                        // dV += P^T dO, dK += dS^T Q (k: the block's queries), dQ^T = K^T dS^T (k: the keys)
                        multiply(pT, 0, NR, doP, i0 * NR, T * NR, dvh, 0, hd, keys, hd, rows, true, tile);
                        multiply(dsT, 0, NR, qP, i0 * NR, T * NR, dkh, 0, hd, keys, hd, rows, true, tile);
                        multiply(kT, 0, T, dsT, 0, keys * NR, dqT, 0, NR, hd, NR, keys, false, tile);
                        for (int r = 0; r < rows; r++)
                            for (int c = 0; c < hd; c++) dqh[(i0 + r) * hd + c] = dqT[c * NR + r];
                    }
                    scatter(dq, b, h, d.qHeads(), T, hd, dqh);
                }
                scatter(dk, b, g, d.kvHeads(), T, hd, dkh);
                scatter(dv, b, g, d.kvHeads(), T, hd, dvh);
            }
        });
    }

    /**
     * A query block's probabilities and score gradient from its transposed scores, in place: row j of {@code pT} (key j,
     * {@code keys} rows of NR) holds S^T[j][c] for query {@code i0 + c}, row j of {@code dsT} dP^T. Then
     * {@code P^T = exp(S^T scale - lse)} (0 where query i0 + c does not see key j, and for columns past the block's
     * {@code rows}: queries past the sequence) and {@code dS^T = P^T (dP^T - delta) scale}, in place of dP^T, the same
     * roundings as the row-wise forward's ({@link #scaleAndShift}), so the gradients are those of a row-wise pass, bit
     * for bit.
     */
    private static void transposedSoftmax(float[] pT, float[] dsT, int keys, int i0, int rows, int[] seg, float fs,
                                          float[] rowLse, float[] delta) {
        int vl = SP.length();
        FloatVector sv = FloatVector.broadcast(SP, fs);
        FloatVector l0 = FloatVector.fromArray(SP, rowLse, i0), l1 = FloatVector.fromArray(SP, rowLse, i0 + vl);
        for (int j = 0; j < keys; j++) {
            int o = j * NR;
            FloatVector.fromArray(SP, pT, o).mul(sv).sub(l0).intoArray(pT, o);
            FloatVector.fromArray(SP, pT, o + vl).mul(sv).sub(l1).intoArray(pT, o + vl);
            if (seg == null) { // query i0 + c sees key j from c = j - i0 on
                if (j > i0) Arrays.fill(pT, o, o + (j - i0), Float.NEGATIVE_INFINITY);
            } else {
                for (int c = 0; c < rows; c++) if (!visible(seg, i0 + c, j)) pT[o + c] = Float.NEGATIVE_INFINITY;
            }
            if (rows < NR) Arrays.fill(pT, o + rows, o + NR, Float.NEGATIVE_INFINITY);
        }
        VectorMath.expInPlace(pT, 0, keys * NR);
        FloatVector d0 = FloatVector.fromArray(SP, delta, i0), d1 = FloatVector.fromArray(SP, delta, i0 + vl);
        for (int j = 0; j < keys; j++) {
            int o = j * NR;
            FloatVector.fromArray(SP, pT, o).mul(FloatVector.fromArray(SP, dsT, o).sub(d0)).mul(sv).intoArray(dsT, o);
            FloatVector.fromArray(SP, pT, o + vl).mul(FloatVector.fromArray(SP, dsT, o + vl).sub(d1)).mul(sv).intoArray(dsT, o + vl);
        }
    }

    /** x[at..at+n) *= s, returning the largest (negative infinity for n = 0); vector lanes, then a scalar tail. */
    private static float scaleAndMax(float[] x, int at, int n, float s) {
        FloatVector sv = FloatVector.broadcast(SP, s), mv = FloatVector.broadcast(SP, Float.NEGATIVE_INFINITY);
        int j = 0;
        for (int end = SP.loopBound(n); j < end; j += SP.length()) {
            FloatVector v = FloatVector.fromArray(SP, x, at + j).mul(sv);
            v.intoArray(x, at + j);
            mv = mv.max(v);
        }
        float mx = mv.reduceLanes(VectorOperators.MAX);
        for (; j < n; j++) {
            x[at + j] *= s;
            if (x[at + j] > mx) mx = x[at + j];
        }
        return mx;
    }

    /** x[at..at+n) = x * s - m (rounded after the product, then after the difference, as the scalar form). */
    private static void scaleAndShift(float[] x, int at, int n, float s, float m) {
        FloatVector sv = FloatVector.broadcast(SP, s), mv = FloatVector.broadcast(SP, m);
        int j = 0;
        for (int end = SP.loopBound(n); j < end; j += SP.length())
            FloatVector.fromArray(SP, x, at + j).mul(sv).sub(mv).intoArray(x, at + j);
        for (; j < n; j++) x[at + j] = x[at + j] * s - m;
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
