package dev.jsloth.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * Cross-entropy's backward into F32, BF16 or F16 logit gradients, in single precision with {@link VectorMath}'s float exp:
 * {@code dLogits = scale * (exp(logits - lse) - onehot)}, the same vocabulary chunks as {@link CrossEntropyKernel},
 * which keeps the double-precision path for F64 logits or gradients (the gradient checks') and the forward pass (its
 * per-row loss and log-sum-exp are F64, so it computes in F64, as the Kernels contract says).
 */
final class CrossEntropyF32 {
    private static final VectorSpecies<Float> FV = VectorMath.FV;
    private static final int VOCAB_CHUNK = 4096;

    private CrossEntropyF32() {
    }

    static void backward(Buffer logits, int[] labels, Buffer lse, int ignoreIndex, double scale, Buffer dLogits, int n, int vocab) {
        float s = (float) scale;
        Parallel.forRange(n, 1, (lo, hi) -> {
            float[] buf = new float[Math.min(VOCAB_CHUNK, vocab)];
            for (int i = lo; i < hi; i++) {
                long base = (long) i * vocab;
                int y = labels[i];
                // lse as two floats: x - lseHi - lseLo rounds relative to x - lse, where x - (float) lse would round lse
                // itself (up to |lse| 2^-24 in every probability's exponent)
                double l = lse.get(i);
                float lseHi = (float) l, lseLo = Double.isFinite(l) ? (float) (l - lseHi) : 0f;
                for (int c0 = 0; c0 < vocab; c0 += VOCAB_CHUNK) {
                    int len = Math.min(VOCAB_CHUNK, vocab - c0);
                    if (y == ignoreIndex) {
                        java.util.Arrays.fill(buf, 0, len, 0f);
                    } else {
                        logits.codec().readFloats(logits.seg(), base + c0, buf, 0, len);
                        shift(buf, len, lseHi, lseLo);
                        VectorMath.expInPlace(buf, 0, len);
                        scale(buf, len, s);
                        if (y >= c0 && y < c0 + len) buf[y - c0] -= s;
                    }
                    dLogits.codec().writeFloats(dLogits.seg(), base + c0, buf, 0, len);
                }
            }
        });
    }

    /** x[0..n) = x - hi - lo. */
    private static void shift(float[] x, int n, float hi, float lo) {
        int j = 0;
        for (int end = FV.loopBound(n); j < end; j += FV.length()) FloatVector.fromArray(FV, x, j).sub(hi).sub(lo).intoArray(x, j);
        for (; j < n; j++) x[j] = x[j] - hi - lo;
    }

    /** x[0..n) *= s. */
    private static void scale(float[] x, int n, float s) {
        int j = 0;
        for (int end = FV.loopBound(n); j < end; j += FV.length()) FloatVector.fromArray(FV, x, j).mul(s).intoArray(x, j);
        for (; j < n; j++) x[j] *= s;
    }
}
