package dev.jsloth.cpu;

import java.lang.foreign.MemorySegment;

/**
 * Causal grouped-query attention for F64 tensors (gradient checks against finite differences), written row by row
 * with no blocking: each query row's scores, softmax and output in one pass, and backward with FlashAttention-2's
 * recurrence from the saved log-sum-exp. Exponentials and logs are {@link StrictMath}'s, the same bits in every JIT
 * tier. The masks are {@link AttentionKernel}'s: key j is visible from query row i (at key position
 * {@code i + kvSeq - seq}) when it is not later and, with packing, in the same segment.
 */
final class AttentionF64 {
    private AttentionF64() {
    }

    private static double dot(double[] a, int ao, double[] b, int bo, int n) {
        double s = 0;
        for (int c = 0; c < n; c++) s = Math.fma(a[ao + c], b[bo + c], s);
        return s;
    }

    /** Rows [0, len) of head h of batch b of a {@code [batch, len, heads, headDim]} tensor, into dst. */
    private static void gather(Buffer src, int b, int h, int heads, int len, int hd, double[] dst) {
        for (int t = 0; t < len; t++) src.read(AttentionKernel.headRow(b, t, h, heads, len, hd), dst, t * hd, hd);
    }

    private static void scatter(Buffer dst, int b, int h, int heads, int len, int hd, double[] src) {
        for (int t = 0; t < len; t++) dst.write(AttentionKernel.headRow(b, t, h, heads, len, hd), src, t * hd, hd);
    }

    static void forward(AttentionKernel.Dims d, Buffer q, Buffer k, Buffer v, MemorySegment segs, double scale, Buffer out, Buffer lse) {
        int T = d.seq(), S = d.kvSeq(), hd = d.headDim(), off = d.offset();
        Parallel.forRange(d.batch() * d.qHeads(), AttentionKernel.tasksPerChunk(d.batch() * d.qHeads()), (lo, hi) -> {
            double[] qh = new double[T * hd], kh = new double[S * hd], vh = new double[S * hd], oh = new double[T * hd];
            double[] s = new double[S];
            for (int task = lo; task < hi; task++) {
                int b = task / d.qHeads(), h = task % d.qHeads(), g = h / d.group();
                int[] seg = AttentionKernel.segments(segs, b, T);
                gather(q, b, h, d.qHeads(), T, hd, qh);
                gather(k, b, g, d.kvHeads(), S, hd, kh);
                gather(v, b, g, d.kvHeads(), S, hd, vh);
                java.util.Arrays.fill(oh, 0);
                for (int i = 0; i < T; i++) {
                    int last = i + off;
                    double mx = Double.NEGATIVE_INFINITY;
                    for (int j = 0; j <= last; j++) {
                        if (!AttentionKernel.visible(seg, last, j)) continue;
                        s[j] = scale * dot(qh, i * hd, kh, j * hd, hd);
                        mx = Math.max(mx, s[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j <= last; j++) {
                        if (!AttentionKernel.visible(seg, last, j)) continue;
                        double p = StrictMath.exp(s[j] - mx);
                        sum += p;
                        for (int c = 0; c < hd; c++) oh[i * hd + c] = Math.fma(p, vh[j * hd + c], oh[i * hd + c]);
                    }
                    for (int c = 0; c < hd; c++) oh[i * hd + c] /= sum;
                    lse.set(((long) b * d.qHeads() + h) * T + i, mx + StrictMath.log(sum));
                }
                scatter(out, b, h, d.qHeads(), T, hd, oh);
            }
        });
    }

    /** Tasks are (batch, key/value head) pairs: the query heads of one group share dK and dV. */
    static void backward(AttentionKernel.Dims d, Buffer dOut, Buffer q, Buffer k, Buffer v, MemorySegment segs, double scale,
                         Buffer out, Buffer lse, Buffer dq, Buffer dk, Buffer dv) {
        int T = d.seq(), hd = d.headDim(), n = T * hd;
        Parallel.forRange(d.batch() * d.kvHeads(), AttentionKernel.tasksPerChunk(d.batch() * d.kvHeads()), (lo, hi) -> {
            double[] qh = new double[n], oh = new double[n], doh = new double[n], dqh = new double[n];
            double[] kh = new double[n], vh = new double[n], dkh = new double[n], dvh = new double[n];
            for (int task = lo; task < hi; task++) {
                int b = task / d.kvHeads(), g = task % d.kvHeads();
                int[] seg = AttentionKernel.segments(segs, b, T);
                gather(k, b, g, d.kvHeads(), T, hd, kh);
                gather(v, b, g, d.kvHeads(), T, hd, vh);
                java.util.Arrays.fill(dkh, 0);
                java.util.Arrays.fill(dvh, 0);
                for (int h = g * d.group(); h < (g + 1) * d.group(); h++) {
                    gather(q, b, h, d.qHeads(), T, hd, qh);
                    gather(out, b, h, d.qHeads(), T, hd, oh);
                    gather(dOut, b, h, d.qHeads(), T, hd, doh);
                    java.util.Arrays.fill(dqh, 0);
                    for (int i = 0; i < T; i++) {
                        double lseI = lse.get(((long) b * d.qHeads() + h) * T + i), delta = dot(doh, i * hd, oh, i * hd, hd);
                        for (int j = 0; j <= i; j++) {
                            if (!AttentionKernel.visible(seg, i, j)) continue;
                            double p = StrictMath.exp(scale * dot(qh, i * hd, kh, j * hd, hd) - lseI);
                            double ds = p * (dot(doh, i * hd, vh, j * hd, hd) - delta) * scale;
                            for (int c = 0; c < hd; c++) {
                                dqh[i * hd + c] = Math.fma(ds, kh[j * hd + c], dqh[i * hd + c]);
                                dkh[j * hd + c] = Math.fma(ds, qh[i * hd + c], dkh[j * hd + c]);
                                dvh[j * hd + c] = Math.fma(p, doh[i * hd + c], dvh[j * hd + c]);
                            }
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
