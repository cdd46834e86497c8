package dev.jsloth.cpu;

/**
 * Row-wise cross-entropy over the vocabulary, streamed in vocabulary chunks with an online max/sum
 * (so a row is never held whole), in double precision; the exponentials lane-wise ({@link VectorMath#expInPlace}).
 */
final class CrossEntropyKernel {
    private static final int VOCAB_CHUNK = 4096;

    private CrossEntropyKernel() {
    }

    static void forward(Buffer logits, int[] labels, int ignoreIndex, Buffer loss, Buffer lse, int n, int vocab) {
        Parallel.forRange(n, 1, (lo, hi) -> {
            double[] buf = new double[Math.min(VOCAB_CHUNK, vocab)];
            for (int i = lo; i < hi; i++) {
                long base = (long) i * vocab;
                double max = Double.NEGATIVE_INFINITY, sum = 0;
                for (int c0 = 0; c0 < vocab; c0 += VOCAB_CHUNK) {
                    int len = Math.min(VOCAB_CHUNK, vocab - c0);
                    logits.read(base + c0, buf, 0, len);
                    double m = VectorMath.max(buf, len, max);
                    if (m == Double.NEGATIVE_INFINITY) continue; // nothing seen yet but -inf logits: they add 0 (-inf - -inf is NaN)
                    if (m > max) {
                        sum = sum == 0 ? 0 : sum * Math.exp(max - m);
                        max = m;
                    }
                    for (int j = 0; j < len; j++) buf[j] -= max;
                    VectorMath.expInPlace(buf, len);
                    sum += VectorMath.sum(buf, len);
                }
                double l = max + Math.log(sum);
                lse.set(i, l);
                int y = labels[i];
                loss.set(i, y == ignoreIndex ? 0.0 : l - logits.get(base + y));
            }
        });
    }

    static void backward(Buffer logits, int[] labels, Buffer lse, int ignoreIndex, double scale, Buffer dLogits, int n, int vocab) {
        Parallel.forRange(n, 1, (lo, hi) -> {
            double[] buf = new double[Math.min(VOCAB_CHUNK, vocab)];
            for (int i = lo; i < hi; i++) {
                long base = (long) i * vocab;
                int y = labels[i];
                double l = lse.get(i);
                for (int c0 = 0; c0 < vocab; c0 += VOCAB_CHUNK) {
                    int len = Math.min(VOCAB_CHUNK, vocab - c0);
                    if (y == ignoreIndex) {
                        java.util.Arrays.fill(buf, 0, len, 0.0);
                    } else {
                        logits.read(base + c0, buf, 0, len);
                        for (int j = 0; j < len; j++) buf[j] -= l;
                        VectorMath.expInPlace(buf, len);
                        for (int j = 0; j < len; j++) buf[j] *= scale;
                        if (y >= c0 && y < c0 + len) buf[y - c0] -= scale;
                    }
                    dLogits.write(base + c0, buf, 0, len);
                }
            }
        });
    }
}
