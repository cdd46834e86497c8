package dev.jsloth.api.ops;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Kernels;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;

/**
 * Token cross-entropy fused with the output projection, chunked over tokens so the {@code [n, vocab]} logits
 * never exist at once.
 *
 * <pre>
 *   logits = H W^T                      H [n, d], W [vocab, d]      (per chunk of rows)
 *   loss_i = logsumexp(logits_i) - logits_i,label_i                 (0 where label_i = ignoreIndex)
 *   dlogits_i = scale * (softmax(logits_i) - onehot(label_i))       (0 on ignored rows)
 *   dH = dlogits W                                                  (W frozen: no dW)
 * </pre>
 * For the mean over counted tokens, {@code scale = 1/count}; with gradient accumulation the caller passes
 * {@code 1/(tokens counted over the whole accumulated batch)} so the summed gradient is token-weighted.
 * The gradient is computed during the forward pass, chunk by chunk, as Liger and Unsloth do: nothing but dH
 * needs to be kept for backward.
 */
public final class CrossEntropy {
    public static final int IGNORE_INDEX = -100;

    /** Sum of per-token losses, the number of counted tokens, and dH (null when not asked for). */
    public record Result(double lossSum, long counted, Tensor dHidden) {
        public double meanLoss() {
            return counted == 0 ? Double.NaN : lossSum / counted;
        }
    }

    private CrossEntropy() {
    }

    /** Number of labels that are not {@link #IGNORE_INDEX}. */
    public static long countTargets(int[] labels) {
        long c = 0;
        for (int l : labels) if (l != IGNORE_INDEX) c++;
        return c;
    }

    /**
     * Loss (and, if {@code withGrad}, dH scaled by {@code gradScale}) for hidden states H and labels already
     * aligned with H's rows (shifted by the caller). {@code chunkRows} bounds the logits kept at once.
     */
    public static Result lmHead(Tensor hidden, Tensor weight, int[] labels, boolean withGrad, double gradScale,
                                int chunkRows) {
        Backend be = hidden.backend();
        Kernels k = be.kernels();
        int n = Math.toIntExact(hidden.shape().rows());
        int d = hidden.shape().cols();
        int vocab = weight.shape().dim(0);
        if (weight.shape().dim(1) != d) throw new IllegalArgumentException("lm head " + weight.shape() + " does not fit hidden " + hidden.shape());
        if (labels.length != n) throw new IllegalArgumentException(labels.length + " labels for " + n + " rows");
        if (chunkRows <= 0) throw new IllegalArgumentException("chunkRows must be positive");
        DType dt = hidden.dtype();
        Tensor h2 = hidden.view(n, d);
        long counted = countTargets(labels);
        Tensor dH = withGrad ? be.allocateForOverwrite(dt, Shape.of(n, d)) : null;
        try (Tensor loss = be.allocate(DType.F64, Shape.of(n)); Tensor lse = be.allocate(DType.F64, Shape.of(n))) {
            for (int start = 0; start < n; start += chunkRows) {
                int rows = Math.min(chunkRows, n - start);
                int[] chunkLabels = java.util.Arrays.copyOfRange(labels, start, start + rows);
                if (!withGrad && countTargets(chunkLabels) == 0) continue;
                try (Tensor logits = be.allocateForOverwrite(dt, Shape.of(rows, vocab));
                     Tensor lab = be.uploadInts(Shape.of(rows), chunkLabels)) {
                    k.gemm(false, true, 1.0, h2.rows(start, rows), weight, 0.0, logits);
                    k.crossEntropyForward(logits, lab, IGNORE_INDEX, loss.rows(start, rows), lse.rows(start, rows));
                    if (withGrad) {
                        k.crossEntropyBackward(logits, lab, lse.rows(start, rows), IGNORE_INDEX, gradScale, logits);
                        k.gemm(false, false, 1.0, logits, weight, 0.0, dH.rows(start, rows));
                    }
                }
            }
            double lossSum = 0;
            for (double v : be.download(loss)) lossSum += v;
            return new Result(lossSum, counted, dH);
        } catch (RuntimeException | Error e) { // dH is the caller's only once this returns
            if (dH != null) dH.close();
            throw e;
        }
    }
}
