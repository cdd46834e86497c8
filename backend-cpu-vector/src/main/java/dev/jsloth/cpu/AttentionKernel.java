package dev.jsloth.cpu;

import java.lang.foreign.MemorySegment;

/**
 * Causal grouped-query attention in double precision, one (batch, head) pair per task. Forward keeps only the
 * row log-sum-exp; backward rebuilds the probabilities from it (FlashAttention-2's recurrence, without the
 * GPU tiling). Backward tasks are (batch, key/value head) pairs so that the query heads of one group, which
 * share dK and dV, never race. A query's scores against all its keys ({@code q K^T}, and {@code dO V^T} in
 * backward) are formed as headDim vector updates over a transposed K (V), so the inner loops run along the keys
 * with no per-pair horizontal sums.
 */
final class AttentionKernel {
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

    /** Copies head h of batch b ({@code [len, headDim]}) out of a {@code [batch, len, heads, headDim]} tensor. */
    private static void gather(Buffer src, int b, int h, int heads, int len, int hd, double[] dst) {
        for (int t = 0; t < len; t++) {
            long off = (((long) b * len + t) * heads + h) * hd;
            src.read(off, dst, t * hd, hd);
        }
    }

    private static void scatter(Buffer dst, int b, int h, int heads, int len, int hd, double[] src) {
        for (int t = 0; t < len; t++) {
            long off = (((long) b * len + t) * heads + h) * hd;
            dst.write(off, src, t * hd, hd);
        }
    }

    /** Segment ids of batch row b (null without packing); only defined when kvSeq == seq. */
    private static int[] segments(MemorySegment seg, int b, int seq) {
        if (seg == null) return null;
        int[] s = new int[seq];
        MemorySegment.copy(seg, CpuBackend.INT, (long) b * seq * 4, s, 0, seq);
        return s;
    }

    private static boolean visible(int[] seg, int i, int j) {
        return j <= i && (seg == null || seg[i] == seg[j]);
    }

    /**
     * xT[c * len + t] = x[t * hd + c]: a head's rows as columns, 16 rows at a time so that each column run written
     * is two cache lines (row by row, every write of a column landed in one of two L1 sets: 10% of a CPU step).
     */
    private static void transpose(double[] x, int len, int hd, double[] xT) {
        for (int t0 = 0; t0 < len; t0 += 16) {
            int t1 = Math.min(len, t0 + 16);
            for (int c = 0; c < hd; c++)
                for (int t = t0; t < t1; t++) xT[c * len + t] = x[t * hd + c];
        }
    }

    /** out[0..n) = sum over c of x[xo + c] * yT[c * len + (0..n)]: one row of x times the first n columns of y^T. */
    private static void rowTimesTransposed(double[] x, int xo, double[] yT, int len, int hd, int n, double[] out) {
        java.util.Arrays.fill(out, 0, n, 0.0);
        for (int c = 0; c < hd; c++) GemmF64.axpy(x[xo + c], yT, c * len, out, 0, n);
    }

    static void forward(Dims d, Buffer q, Buffer k, Buffer v, MemorySegment segs, double scale, Buffer out, Buffer lse) {
        int T = d.seq(), S = d.kvSeq(), hd = d.headDim(), off = d.offset();
        Parallel.forRange(d.batch() * d.qHeads(), 1, (lo, hi) -> {
            double[] qh = new double[T * hd], kh = new double[S * hd], kT = new double[S * hd], vh = new double[S * hd];
            double[] oh = new double[T * hd], s = new double[S];
            for (int task = lo; task < hi; task++) {
                int b = task / d.qHeads(), h = task % d.qHeads(), g = h / d.group();
                int[] seg = segments(segs, b, T);
                gather(q, b, h, d.qHeads(), T, hd, qh);
                gather(k, b, g, d.kvHeads(), S, hd, kh);
                gather(v, b, g, d.kvHeads(), S, hd, vh);
                transpose(kh, S, hd, kT);
                java.util.Arrays.fill(oh, 0);
                for (int i = 0; i < T; i++) {
                    int last = i + off;
                    rowTimesTransposed(qh, i * hd, kT, S, hd, last + 1, s);
                    double max = Double.NEGATIVE_INFINITY;
                    for (int j = 0; j <= last; j++) {
                        if (!visible(seg, last, j)) continue;
                        s[j] *= scale;
                        if (s[j] > max) max = s[j];
                    }
                    double sum = 0;
                    for (int j = 0; j <= last; j++) {
                        if (!visible(seg, last, j)) continue;
                        double p = Math.exp(s[j] - max);
                        sum += p;
                        GemmF64.axpy(p, vh, j * hd, oh, i * hd, hd);
                    }
                    double inv = 1.0 / sum;
                    for (int c = 0; c < hd; c++) oh[i * hd + c] *= inv;
                    lse.set(((long) b * d.qHeads() + h) * T + i, max + Math.log(sum));
                }
                scatter(out, b, h, d.qHeads(), T, hd, oh);
            }
        });
    }

    static void backward(Dims d, Buffer dOut, Buffer q, Buffer k, Buffer v, MemorySegment segs, double scale,
                         Buffer out, Buffer lse, Buffer dq, Buffer dk, Buffer dv) {
        int T = d.seq(), hd = d.headDim();
        Parallel.forRange(d.batch() * d.kvHeads(), 1, (lo, hi) -> {
            int n = T * hd;
            double[] qh = new double[n], kh = new double[n], vh = new double[n], oh = new double[n], doh = new double[n];
            double[] kT = new double[n], vT = new double[n], srow = new double[T], dprow = new double[T];
            double[] dqh = new double[n], dkh = new double[n], dvh = new double[n];
            double[] rowLse = new double[T], delta = new double[T];
            for (int task = lo; task < hi; task++) {
                int b = task / d.kvHeads(), g = task % d.kvHeads();
                int[] seg = segments(segs, b, T);
                gather(k, b, g, d.kvHeads(), T, hd, kh);
                gather(v, b, g, d.kvHeads(), T, hd, vh);
                transpose(kh, T, hd, kT);
                transpose(vh, T, hd, vT);
                java.util.Arrays.fill(dkh, 0);
                java.util.Arrays.fill(dvh, 0);
                for (int h = g * d.group(); h < (g + 1) * d.group(); h++) {
                    gather(q, b, h, d.qHeads(), T, hd, qh);
                    gather(out, b, h, d.qHeads(), T, hd, oh);
                    gather(dOut, b, h, d.qHeads(), T, hd, doh);
                    lse.read(((long) b * d.qHeads() + h) * T, rowLse, 0, T);
                    java.util.Arrays.fill(dqh, 0);
                    for (int i = 0; i < T; i++) {
                        delta[i] = GemmF64.dot(doh, i * hd, oh, i * hd, hd);
                        rowTimesTransposed(qh, i * hd, kT, T, hd, i + 1, srow);
                        rowTimesTransposed(doh, i * hd, vT, T, hd, i + 1, dprow);
                        for (int j = 0; j <= i; j++) {
                            if (!visible(seg, i, j)) continue;
                            double p = Math.exp(srow[j] * scale - rowLse[i]);
                            GemmF64.axpy(p, doh, i * hd, dvh, j * hd, hd);
                            double ds = p * (dprow[j] - delta[i]) * scale;
                            GemmF64.axpy(ds, kh, j * hd, dqh, i * hd, hd);
                            GemmF64.axpy(ds, qh, i * hd, dkh, j * hd, hd);
                        }
                    }
                    scatter(dq, b, h, d.qHeads(), T, hd, dqh);
                }
                scatter(dk, b, g, d.kvHeads(), T, hd, dkh);
                scatter(dv, b, g, d.kvHeads(), T, hd, dvh);
            }
        });
    }
}
