package dev.jsloth.api.ops;

import dev.jsloth.api.Allocations;
import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Kernels;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.autograd.Parameter;

/**
 * A frozen linear layer with an optional LoRA adapter:
 * <pre>
 *   Y = X W^T + b + s * (X A^T) B^T          X [n, in], W [out, in], A [r, in], B [out, r]
 * </pre>
 * with {@code s = alpha / r} (or {@code alpha / sqrt(r)} for rsLoRA). The rank-r product {@code XA = X A^T}
 * ({@code [n, r]}) is formed first, so the adapter costs {@code 2nr(in+out)} flops instead of forming
 * {@code B A}. Forward saves X (by reference) and XA.
 *
 * <p>Mixed precision: when X is 16-bit (bf16 training) and the parameters are F32 (master weights, as PEFT keeps
 * them), the rank-r path (A, B, XA, dY B) runs in the backend's {@link Kernels#lowRankType}: F32 on every backend here,
 * as PEFT computes its adapters (the GPUs' tensor cores take the F32 operands as bf16 parts), or, where a backend
 * returns the input's type, 16-bit copies of A and B (rounded once per pass) and 16-bit XA and dY B. The gradients of A
 * and B accumulate in F32 either way.
 *
 * <p>Backward, from {@code dY [n, out]} (W frozen, so no dW):
 * <pre>
 *   dYB = dY B                    [n, r]    computed once, used twice
 *   dX  = dY W + s * dYB A        [n, in]
 *   dA += s * dYB^T X             [r, in]
 *   dB += s * dY^T XA             [out, r]
 *   db  = sum_rows dY             (only if the bias were trainable; it is frozen here)
 * </pre>
 *
 * <p>LoRA dropout (PEFT's {@code lora_dropout}, probability p): in a pass with a dropout seed the adapter reads
 * {@code D(X) = X * mask / (1 - p)} instead of X ({@link Dropout}; the mask is this projection's own, a function of
 * the seed and the element's place, never stored): {@code XA = D(X) A^T}, {@code dA += s dYB^T D(X)}, and dX's
 * adapter term is {@code D(s dYB A)} (the same mask), added to {@code dY W}. The mask is applied as an exact copy of
 * X's type and {@code 1 / (1 - p)} as the products' scale, so the masked input is never rounded and the products keep
 * their fast paths. The forward keeps its masked copy of X for dA ({@link Saved#maskedX}: as PyTorch keeps dropout's
 * output, one more activation of X's size a projection); a checkpointed forward drops it and its backward masks X
 * again. Evaluation and inference (no seed) use X as it is.
 */
public final class LoraLinear {
    private final Tensor weight;
    private final Tensor bias;
    private final Parameter loraA;
    private final Parameter loraB;
    private final double scaling;
    private final double dropout;
    private final long dropoutStream;

    /**
     * What forward keeps for backward: the input (not owned), the rank-r product, and the adapter matrices in the
     * rank-r type ({@link #rankType}) when the parameters are kept in another (the owned ones may be null).
     */
    public record Saved(Tensor x, Tensor xa, Factors factors, long maskSeed, Tensor maskedX) implements AutoCloseable {
        /** Without dropout. */
        public Saved(Tensor x, Tensor xa, Factors factors) {
            this(x, xa, factors, 0L, null);
        }

        /**
         * With dropout's mask seed ({@code maskSeed}, 0: none) and, where the forward kept it, the masked input
         * {@code X * mask} it formed (owned; null: backward masks X again).
         */
        public Saved {
            if (maskedX != null && maskSeed == 0) throw new IllegalArgumentException("a masked input without a mask seed");
        }

        @Override
        public void close() {
            if (xa != null) xa.close();
            if (factors != null) factors.close();
            if (maskedX != null) maskedX.close();
        }

        /**
         * Hands the rank-r product XA to the caller (null without an adapter) and frees the rest: what a checkpointed
         * forward keeps of this state for its recompute. The record is spent then: not to be closed or used again.
         */
        public Tensor takeXa() {
            if (factors != null) factors.close();
            if (maskedX != null) maskedX.close();
            return xa;
        }
    }

    /**
     * The adapter matrices as the products use them: the parameters themselves, or copies in the rank-r type
     * ({@link #rankType}).
     */
    public record Factors(Tensor a, Tensor b, boolean owned) implements AutoCloseable {
        @Override
        public void close() {
            if (owned) {
                a.close();
                b.close();
            }
        }
    }

    /** The type of the rank-r path for input of type {@code input} ({@link Kernels#lowRankType}); the input's without an adapter. */
    DType rankType(DType input) {
        return loraA == null ? input : loraA.value().backend().kernels().lowRankType(input, loraA.value().dtype());
    }

    /** A and B in {@code type}: the parameters when they already are, else fresh copies. */
    Factors factors(DType type) {
        Tensor a = loraA.value(), b = loraB.value();
        if (a.dtype() == type && b.dtype() == type) return new Factors(a, b, false);
        Tensor ca = loraA.computeCopy(type), cb = loraB.computeCopy(type);
        if (ca != null && cb != null) return new Factors(ca, cb, false); // converted once for the whole pass
        Kernels k = a.backend().kernels();
        try (Allocations made = new Allocations()) {
            Tensor ac = made.add(a.backend().allocateForOverwrite(type, a.shape())), bc = made.add(a.backend().allocateForOverwrite(type, b.shape()));
            k.copy(a, ac);
            k.copy(b, bc);
            return made.handOver(new Factors(ac, bc, true));
        }
    }

    /** A plain frozen linear layer (no adapter). */
    public LoraLinear(Tensor weight, Tensor bias) {
        this(weight, bias, null, null, 0);
    }

    public LoraLinear(Tensor weight, Tensor bias, Parameter loraA, Parameter loraB, double scaling) {
        this(weight, bias, loraA, loraB, scaling, 0.0, 0L);
    }

    /**
     * With LoRA dropout: probability {@code dropout} in [0, 1) on the adapter's input, masks drawn from each pass's
     * seed mixed with {@code dropoutStream} (a number of this projection's own, e.g. from its layer and place).
     */
    public LoraLinear(Tensor weight, Tensor bias, Parameter loraA, Parameter loraB, double scaling, double dropout, long dropoutStream) {
        Dropout.check(dropout);
        if (weight.shape().rank() != 2) throw new IllegalArgumentException("weight must be [out, in], got " + weight.shape());
        if ((loraA == null) != (loraB == null)) throw new IllegalArgumentException("LoRA needs both A and B");
        if (loraA != null) {
            Shape a = loraA.value().shape(), b = loraB.value().shape();
            if (a.rank() != 2 || b.rank() != 2 || a.dim(1) != inFeatures(weight) || b.dim(0) != outFeatures(weight) || a.dim(0) != b.dim(1))
                throw new IllegalArgumentException("LoRA shapes A" + a + " B" + b + " do not fit weight " + weight.shape());
        }
        if (bias != null && bias.numel() != outFeatures(weight))
            throw new IllegalArgumentException("bias " + bias.shape() + " does not fit weight " + weight.shape());
        this.weight = weight;
        this.bias = bias;
        this.loraA = loraA;
        this.loraB = loraB;
        this.scaling = scaling;
        this.dropout = dropout;
        this.dropoutStream = dropoutStream;
    }

    /** LoRA's scale: {@code alpha/r}, or {@code alpha/sqrt(r)} with rsLoRA. */
    public static double scaling(double alpha, int rank, boolean rsLora) {
        return rsLora ? alpha / Math.sqrt(rank) : alpha / rank;
    }

    private static int inFeatures(Tensor w) {
        return w.shape().dim(1);
    }

    private static int outFeatures(Tensor w) {
        return w.shape().dim(0);
    }

    public int inFeatures() {
        return inFeatures(weight);
    }

    public int outFeatures() {
        return outFeatures(weight);
    }

    public Tensor weight() {
        return weight;
    }

    public Tensor bias() {
        return bias;
    }

    public Parameter loraA() {
        return loraA;
    }

    public Parameter loraB() {
        return loraB;
    }

    public double scaling() {
        return scaling;
    }

    public boolean hasAdapter() {
        return loraA != null;
    }

    /** LoRA dropout's probability (0: none). */
    public double dropout() {
        return dropout;
    }

    /** This adapter's mask seed in dropout pass {@code pass}: 0 (no mask) without an adapter, a dropout probability or a seed. */
    long maskSeed(Dropout.Pass pass) {
        return loraA == null || dropout == 0 ? 0L : pass.maskSeed(dropoutStream, inFeatures());
    }

    /** Whether dropout pass {@code pass} masks this adapter's input. */
    public boolean dropsOut(Dropout.Pass pass) {
        return maskSeed(pass) != 0;
    }

    /** A new {@code t * mask} of t's type (the mask of {@code maskSeed}; exact: kept values are copied as they are). */
    private Tensor masked(Tensor t, long maskSeed) {
        Tensor out = t.backend().allocateForOverwrite(t.dtype(), t.shape());
        try {
            t.backend().kernels().dropoutMask(t, dropout, maskSeed, out);
            return out;
        } catch (RuntimeException | Error e) {
            out.close();
            throw e;
        }
    }

    /** The output of a training forward: Y and what backward needs. */
    public record Forward(Tensor y, Saved saved) {
    }

    /** Inference forward: a new tensor {@code [n, out]} of x's type; nothing is kept. */
    public Tensor forward(Tensor x) {
        Forward f = forwardSaving(x);
        f.saved().close();
        return f.y();
    }

    /** Training forward: Y plus the saved activations for {@link #backward}. */
    public Forward forwardSaving(Tensor x) {
        return forwardSaving(x, Dropout.Pass.NONE);
    }

    /** {@link #forwardSaving(Tensor)} in a dropout pass ({@link Dropout.Pass#NONE}: none). */
    public Forward forwardSaving(Tensor x, Dropout.Pass pass) {
        checkInput(x);
        return forward(x, saveForBackward(x, pass), null);
    }

    /**
     * Training forward of a projection whose output joins a residual connection: {@code Y = X W^T + b + s (X A^T) B^T +
     * residual} (residual {@code [n, out]}, read only), the add folded into the products where the backend can.
     */
    public Forward forwardSavingPlus(Tensor x, Tensor residual) {
        return forwardSavingPlus(x, residual, Dropout.Pass.NONE);
    }

    /** {@link #forwardSavingPlus(Tensor, Tensor)} in a dropout pass ({@link Dropout.Pass#NONE}: none). */
    public Forward forwardSavingPlus(Tensor x, Tensor residual, Dropout.Pass pass) {
        checkInput(x);
        java.util.Objects.requireNonNull(residual, "residual");
        if (residual.numel() != x.shape().rows() * outFeatures())
            throw new IllegalArgumentException("residual " + residual.shape() + " does not fit the output [" + x.shape().rows() + ", "
                    + outFeatures() + "]");
        return forward(x, saveForBackward(x, pass), residual);
    }

    /**
     * Training forward from a kept rank-r product {@code xa = X A^T} (ownership passes to the result; null without an
     * adapter): a recompute that kept XA forms only Y, without reading X for XA again.
     */
    public Forward forwardSavingWith(Tensor x, Tensor xa) {
        return forwardSavingWith(x, xa, Dropout.Pass.NONE);
    }

    /** {@link #forwardSavingWith(Tensor, Tensor)} in a dropout pass ({@link Dropout.Pass#NONE}: none). */
    public Forward forwardSavingWith(Tensor x, Tensor xa, Dropout.Pass pass) {
        checkInput(x);
        return forward(x, savedWith(x, xa, pass), null);
    }

    /** The forward from a saved state made for this input ({@link #saveForBackward}, {@link #savedWith}). */
    Forward forwardWith(Tensor x, Saved saved) {
        return forward(x, saved, null);
    }

    private Forward forward(Tensor x, Saved saved, Tensor residual) {
        Tensor xa = saved.xa();
        try {
            return new Forward(output(x, xa, false, xa == null ? null : saved.factors().b(), residual), saved);
        } catch (RuntimeException | Error e) { // no output: what was saved for it is freed
            saved.close();
            throw e;
        }
    }

    /**
     * A new {@code Y = X W^T + b + s op(XA) B^T (+ residual)} from a rank-r product given as {@code [n, r]}, or kept
     * transposed {@code [r, n]} ({@code transposedXa}; no residual then); xa and b null for the plain product.
     */
    Tensor output(Tensor x, Tensor xa, boolean transposedXa, Tensor b, Tensor residual) {
        Backend be = x.backend();
        Kernels k = be.kernels();
        int n = Math.toIntExact(x.shape().rows());
        if (residual != null && transposedXa) throw new IllegalArgumentException("a residual is added to a product whose XA is [n, r]");
        try (Allocations made = new Allocations()) {
            Tensor y = made.add(be.allocateForOverwrite(x.dtype(), Shape.of(n, outFeatures())));
            // the adapter's term with the base product (one pass where the backend fuses them: Y written once)
            if (residual != null) k.gemmPlusLowRankAdding(false, true, 1.0, x, weight, scaling, xa, b, residual, y);
            else if (xa != null) k.gemmPlusLowRank(false, true, 1.0, x, weight, scaling, xa, transposedXa, b, 0.0, y);
            else k.gemm(false, true, 1.0, x, weight, 0.0, y);
            if (bias != null) k.addRowVector(y, bias);
            return made.handOver(y);
        }
    }

    /**
     * What {@link #forwardSaving} saves, without Y: for a recompute before backward, where only the input's rank-r
     * product is needed ({@code 2nr in} flops instead of {@code 2n out (in + r)}).
     */
    public Saved saveForBackward(Tensor x) {
        return saveForBackward(x, Dropout.Pass.NONE);
    }

    /** {@link #saveForBackward(Tensor)} in a dropout pass ({@link Dropout.Pass#NONE}: none). */
    public Saved saveForBackward(Tensor x, Dropout.Pass pass) {
        checkInput(x);
        if (loraA == null) return new Saved(x, null, null);
        Backend be = x.backend();
        DType rank = rankType(x.dtype());
        long mask = maskSeed(pass);
        try (Allocations made = new Allocations()) {
            Factors f = made.add(factors(rank));
            Tensor xa = made.add(be.allocateForOverwrite(rank, Shape.of(Math.toIntExact(x.shape().rows()), loraA.value().shape().dim(0))));
            Tensor xm = null;
            if (mask == 0) be.kernels().gemm(false, true, 1.0, x, f.a(), 0.0, xa);
            else { // D(X) A^T = (X * mask) A^T / (1 - p); X * mask kept for dA (a pass over X fewer in backward)
                xm = made.add(masked(x, mask));
                be.kernels().gemm(false, true, Dropout.scale(dropout), xm, f.a(), 0.0, xa);
            }
            return made.handOver(new Saved(x, xa, f, mask, xm));
        }
    }

    /**
     * The saved state from a kept rank-r product {@code xa} (ownership passes to the result; null without an
     * adapter): for a recompute that kept XA instead of forming it again.
     */
    public Saved savedWith(Tensor x, Tensor xa) {
        return savedWith(x, xa, Dropout.Pass.NONE);
    }

    /** {@link #savedWith(Tensor, Tensor)} for a product formed in dropout pass {@code pass}. */
    public Saved savedWith(Tensor x, Tensor xa, Dropout.Pass pass) {
        checkInput(x);
        if ((loraA == null) != (xa == null))
            throw new IllegalArgumentException(loraA == null ? "a rank-r product given to a layer without an adapter" : "the adapter's rank-r product is missing");
        return loraA == null ? new Saved(x, null, null) : new Saved(x, xa, factors(rankType(x.dtype())), maskSeed(pass), null);
    }

    /** Backward: returns a new dX {@code [n, in]} and accumulates into the LoRA parameters' gradients. */
    public Tensor backward(Tensor dy, Saved saved) {
        int n = Math.toIntExact(saved.x().shape().rows());
        try (Allocations made = new Allocations()) {
            Tensor dx = made.add(dy.backend().allocateForOverwrite(dy.dtype(), Shape.of(n, inFeatures())));
            backward(dy, saved, dx, false);
            return made.handOver(dx);
        }
    }

    /**
     * Backward adding dX into {@code dx} (the products accumulate with beta = 1: no separate sum when several
     * projections read the same input, as Q, K and V do).
     */
    public void backwardInto(Tensor dy, Saved saved, Tensor dx) {
        backward(dy, saved, dx, true);
    }

    /** Backward where dX is not needed: accumulates into the LoRA parameters' gradients only (nothing without an adapter). */
    public void backwardParametersOnly(Tensor dy, Saved saved) {
        backward(dy, saved, null, false);
    }

    /** dX into {@code dx} (null: not formed) and the LoRA parameters' gradients. */
    private void backward(Tensor dy, Saved saved, Tensor dx, boolean accumulate) {
        Backend be = dy.backend();
        Kernels k = be.kernels();
        Tensor x = saved.x();
        int n = Math.toIntExact(x.shape().rows());
        if (loraA == null) {
            if (dx != null) k.gemm(false, false, 1.0, dy, weight, accumulate ? 1.0 : 0.0, dx);
            return;
        }
        int r = loraA.value().shape().dim(0);
        Factors f = saved.factors();
        long mask = saved.maskSeed();
        try (Tensor dyb = be.allocateForOverwrite(rankType(dy.dtype()), Shape.of(n, r))) {
            k.gemm(false, false, 1.0, dy, f.b(), 0.0, dyb);
            double keptScale = mask == 0 ? scaling : scaling * Dropout.scale(dropout); // with dropout: s / (1 - p)
            if (mask == 0) k.gemm(true, false, scaling, dyb, x, 1.0, loraA.grad());
            else if (saved.maskedX() != null) k.gemm(true, false, keptScale, dyb, saved.maskedX(), 1.0, loraA.grad());
            else try (Tensor xm = masked(x, mask)) {
                k.gemm(true, false, keptScale, dyb, xm, 1.0, loraA.grad());
            }
            k.gemm(true, false, scaling, dy, saved.xa(), 1.0, loraB.grad());
            if (dx == null) return;
            if (mask == 0) {
                // dX = dY W + s (dY B) A, with the adapter's term in the same pass where the backend fuses them
                k.gemmPlusLowRank(false, false, 1.0, dy, weight, scaling, dyb, f.a(), accumulate ? 1.0 : 0.0, dx);
                return;
            }
            // dX = dY W + mask * (s / (1 - p)) (dY B) A: the adapter's term masked in dX's type, then the base product
            // added on top of it (beta = 1)
            if (!accumulate) {
                k.gemm(false, false, keptScale, dyb, f.a(), 0.0, dx);
                k.dropoutMask(dx, dropout, mask, dx);
            } else {
                try (Tensor term = be.allocateForOverwrite(dx.dtype(), dx.shape())) {
                    k.gemm(false, false, keptScale, dyb, f.a(), 0.0, term);
                    k.dropoutMask(term, dropout, mask, term);
                    k.add(dx, term, dx);
                }
            }
            k.gemm(false, false, 1.0, dy, weight, 1.0, dx);
        }
    }

    private void checkInput(Tensor x) {
        if (x.shape().cols() != inFeatures())
            throw new IllegalArgumentException("input " + x.shape() + " does not fit weight " + weight.shape());
        if (!x.dtype().isFloating() || x.dtype() == DType.NF4)
            throw new IllegalArgumentException("input must be floating, got " + x.dtype());
    }
}
