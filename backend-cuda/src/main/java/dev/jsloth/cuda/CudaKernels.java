package dev.jsloth.cuda;

import dev.jsloth.api.AdamWStep;
import dev.jsloth.api.AttentionDims;
import dev.jsloth.api.DType;
import dev.jsloth.api.KernelArguments;
import dev.jsloth.api.Kernels;

import static dev.jsloth.api.KernelArguments.requireNumel;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.ops.Dropout;

/**
 * The CUDA backend's {@link Kernels}: the CPU backend's argument checks (same rules, same messages), then the op
 * classes of this package. Label and token-id tensors are read back to validate them, as the CPU backend does.
 */
final class CudaKernels implements Kernels {
    private final CudaBackend be;
    private final GemmOp gemm;

    CudaKernels(CudaBackend be) {
        this.be = be;
        this.gemm = new GemmOp(be);
    }

    GemmOp gemmOp() {
        return gemm;
    }

    private CudaTensor t(Tensor x) {
        return be.tensor(x);
    }

    private void requireFloating(Tensor... ts) {
        for (Tensor x : ts) {
            if (x == null) continue;
            t(x);
            if (!x.dtype().isFloating())
                throw new IllegalArgumentException("expected a floating tensor, got " + x.dtype() + " " + x.shape());
        }
    }

    /** A GEMM operand is floating or NF4 (dequantized on read). */
    private void requireReadable(Tensor x) {
        t(x);
        if (!x.dtype().isFloating() && x.dtype() != DType.NF4)
            throw new IllegalArgumentException("expected a floating tensor, got " + x.dtype() + " " + x.shape());
    }

    // ---------------------------------------------------------------- GEMM

    @Override
    public void gemm(boolean transA, boolean transB, double alpha, Tensor a, Tensor b, double beta, Tensor c) {
        checkGemm(transA, transB, a, b, c, a.shape().rows(), a.shape().cols(), b.shape().rows(), b.shape().cols(),
                c.shape().rows(), c.shape().cols());
        gemm.multiply(transA, transB, alpha, t(a), t(b), beta, t(c), 1, a.shape().rows(), a.shape().cols(),
                b.shape().rows(), b.shape().cols());
    }

    /**
     * F32 for bf16 input with F32 adapters (the wider of the two, as on the CPU): the rank-r products and the factors stay
     * F32 and reach the bf16 tensor-core GEMM as hi/mid/lo parts ({@link LowRankSplit}); F16 input keeps its own type.
     */
    @Override
    public DType lowRankType(DType input, DType parameters) {
        return input == DType.F16 || !LOW_RANK_F32 ? input : Kernels.wider(input, parameters);
    }

    /** {@code -Djsloth.cuda.lowRankF32=false}: the adapter's path in bf16 copies instead (for comparisons). */
    private static final boolean LOW_RANK_F32 = !"false".equals(System.getProperty("jsloth.cuda.lowRankF32"));

    /**
     * C folded into the first product as cuBLASLt's out-of-place input ({@code D = s L R + C}, then {@code D += A B}), so
     * no pass over D of its own; the default where that product would need converted operands.
     */
    @Override
    public void gemmPlusLowRankAdding(boolean transA, boolean transB, double alpha, Tensor a, Tensor b, double lowScale, Tensor l,
                                      Tensor r, Tensor c, Tensor d) {
        KernelArguments.checkLowRankAdding(a, b, l, r, c, d);
        Tensor first = l == null ? a : l, second = l == null ? b : r;
        checkGemm(transA, transB, a, b, d, a.shape().rows(), a.shape().cols(), b.shape().rows(), b.shape().cols(),
                d.shape().rows(), d.shape().cols());
        if (l != null) checkGemm(transA, transB, l, r, d, l.shape().rows(), l.shape().cols(), r.shape().rows(), r.shape().cols(),
                d.shape().rows(), d.shape().cols());
        if (gemm.multiplyOnto(transA, transB, l == null ? alpha : lowScale, t(first), t(second), t(c), t(d), first.shape().rows(),
                first.shape().cols(), second.shape().rows(), second.shape().cols())) {
            if (l != null) gemm(transA, transB, alpha, a, b, 1.0, d);
            return;
        }
        Kernels.super.gemmPlusLowRankAdding(transA, transB, alpha, a, b, lowScale, l, r, c, d);
    }

    @Override
    public void gemmBatched(boolean transA, boolean transB, double alpha, Tensor a, Tensor b, double beta, Tensor c) {
        int batch = KernelArguments.checkBatched(a, b, c);
        long ar = a.shape().dim(1), ac = a.shape().dim(2), br = b.shape().dim(1), bc = b.shape().dim(2);
        checkGemm(transA, transB, a, b, c, ar, ac, br, bc, c.shape().dim(1), c.shape().dim(2));
        gemm.multiply(transA, transB, alpha, t(a), t(b), beta, t(c), batch, ar, ac, br, bc);
    }

    private void checkGemm(boolean transA, boolean transB, Tensor a, Tensor b, Tensor c, long ar, long ac, long br, long bc,
                           long cr, long cc) {
        requireFloating(c);
        requireReadable(a);
        requireReadable(b);
        long m = transA ? ac : ar, k = transA ? ar : ac, kb = transB ? bc : br, n = transB ? br : bc;
        if (kb != k || cr != m || cc != n)
            throw new IllegalArgumentException("GEMM shapes do not agree: op(A) " + m + "x" + k + ", op(B) " + kb + "x" + n
                    + ", C " + cr + "x" + cc + " (A " + a.shape() + (transA ? "^T" : "") + ", B " + b.shape() + (transB ? "^T" : "") + ", C " + c.shape() + ")");
        if (a == c || b == c) throw new IllegalArgumentException("GEMM output must not alias an input");
    }

    // ---------------------------------------------------------------- norms and activations

    @Override
    public void rmsNormForward(Tensor x, Tensor weight, double eps, Tensor y, Tensor rstd) {
        requireFloating(x, weight, y, rstd);
        KernelArguments.checkRmsNormForward(x, weight, y, rstd);
        int d = x.shape().cols();
        int n = Math.toIntExact(x.shape().rows());
        NormOps.rmsNormForward(be, x, weight, eps, y, rstd, n, d);
    }

    @Override
    public void rmsNormBackward(Tensor dy, Tensor x, Tensor weight, Tensor rstd, Tensor dx, Tensor dWeight) {
        rmsNormBackwardWithResidual(dy, x, weight, rstd, null, dx, dWeight);
    }

    /** The residual gradient added in the norm's pass (dx written once). A null residual adds nothing. */
    @Override
    public void rmsNormBackwardWithResidual(Tensor dy, Tensor x, Tensor weight, Tensor rstd, Tensor residual, Tensor dx, Tensor dWeight) {
        requireFloating(dy, x, weight, rstd, residual, dx, dWeight);
        KernelArguments.checkRmsNormBackwardWithResidual(dy, x, weight, rstd, residual, dx, dWeight);
        int d = x.shape().cols();
        int n = Math.toIntExact(x.shape().rows());
        NormOps.rmsNormBackward(be, dy, x, weight, rstd, residual, dx, dWeight, n, d);
    }

    @Override
    public void rope(Tensor x, Tensor cos, Tensor sin, int heads, boolean inverse) {
        requireFloating(x, cos, sin);
        int headDim = KernelArguments.checkRope(x, cos, sin, heads);
        int n = Math.toIntExact(x.shape().rows());
        NormOps.rope(be, x, cos, sin, n, heads, headDim, inverse);
    }

    @Override
    public void swigluForward(Tensor gate, Tensor up, Tensor out) {
        requireFloating(gate, up, out);
        KernelArguments.checkSameNumel("SwiGLU operand", gate, up, out);
        NormOps.swigluForward(be, gate, up, out, gate.numel());
    }

    @Override
    public void swigluBackward(Tensor dOut, Tensor gate, Tensor up, Tensor dGate, Tensor dUp) {
        requireFloating(dOut, gate, up, dGate, dUp);
        KernelArguments.checkSameNumel("SwiGLU operand", gate, dOut, up, dGate, dUp);
        NormOps.swigluBackward(be, dOut, gate, up, dGate, dUp, gate.numel());
    }

    // ---------------------------------------------------------------- attention

    private void checkAttention(AttentionDims d, Tensor q, Tensor k, Tensor v, Tensor segments, Tensor lse) {
        requireFloating(q, k, v, lse);
        if (segments != null) t(segments);
        KernelArguments.checkAttention(d, q, k, v, segments, lse);
    }

    @Override
    public void attentionForward(AttentionDims d, Tensor q, Tensor k, Tensor v, Tensor segments, double scale, Tensor out, Tensor lse) {
        checkAttention(d, q, k, v, segments, lse);
        requireFloating(out);
        requireNumel(out, d.queryElements(), "attention out");
        AttentionOp.forward(be, d, q, k, v, segments, scale, out, lse);
    }

    @Override
    public void attentionBackward(AttentionDims d, Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor segments, double scale,
                                  Tensor out, Tensor lse, Tensor dq, Tensor dk, Tensor dv) {
        checkAttention(d, q, k, v, segments, lse);
        requireFloating(dOut, out, dq, dk, dv);
        KernelArguments.checkAttentionBackward(d, dOut, out, dq, dk, dv);
        AttentionOp.backward(be, d, dOut, q, k, v, segments, scale, out, lse, dq, dk, dv);
    }

    // ---------------------------------------------------------------- loss

    @Override
    public void crossEntropyForward(Tensor logits, Tensor labels, int ignoreIndex, Tensor loss, Tensor lse) {
        requireFloating(logits, loss, lse);
        int[] y = KernelArguments.checkCrossEntropyForward(be, logits, labels, ignoreIndex, loss, lse);
        CrossEntropyOp.forward(be, logits, labels, ignoreIndex, loss, lse, y.length, logits.shape().cols());
    }

    @Override
    public void crossEntropyBackward(Tensor logits, Tensor labels, Tensor lse, int ignoreIndex, double scale, Tensor dLogits) {
        requireFloating(logits, lse, dLogits);
        int[] y = KernelArguments.checkCrossEntropyBackward(be, logits, labels, lse, ignoreIndex, dLogits);
        CrossEntropyOp.backward(be, logits, labels, lse, ignoreIndex, scale, dLogits, y.length, logits.shape().cols());
    }

    // ---------------------------------------------------------------- embedding

    @Override
    public void embeddingForward(Tensor table, Tensor ids, Tensor out) {
        requireFloating(table, out);
        int[] idv = KernelArguments.checkEmbedding(be, table, ids, out, "embedding output");
        int dim = table.shape().cols();
        EmbeddingOp.forward(be, table, ids, out, idv.length, dim);
    }

    @Override
    public void embeddingBackward(Tensor dOut, Tensor ids, Tensor dTable) {
        requireFloating(dOut, dTable);
        int[] idv = KernelArguments.checkEmbedding(be, dTable, ids, dOut, "embedding dOut");
        int dim = dTable.shape().cols();
        EmbeddingOp.backward(be, dOut, idv, dTable, dim);
    }

    // ---------------------------------------------------------------- optimizer and elementwise

    @Override
    public void adamw(Tensor param, Tensor grad, Tensor m, Tensor v, AdamWStep step) {
        requireFloating(param, grad, m, v);
        KernelArguments.checkSameNumel("AdamW operand", param, grad, m, v);
        ElementwiseOps.adamw(be, param, grad, m, v, step, param.numel());
    }

    @Override
    public void add(Tensor a, Tensor b, Tensor out) {
        requireFloating(a, b, out);
        requireNumel(b, a.numel(), "add operand");
        requireNumel(out, a.numel(), "add output");
        ElementwiseOps.add(be, a, b, out, a.numel());
    }

    @Override
    public void axpy(double alpha, Tensor x, Tensor y) {
        requireFloating(x, y);
        requireNumel(y, x.numel(), "axpy y");
        ElementwiseOps.axpy(be, alpha, x, y, x.numel());
    }

    @Override
    public void scale(Tensor x, double alpha) {
        requireFloating(x);
        ElementwiseOps.scale(be, t(x).address(), ElementType.of(x.dtype()), alpha, x.numel());
    }

    @Override
    public void dropoutMask(Tensor x, double p, long seed, Tensor out) {
        KernelArguments.checkDropoutMask(x, p, out);
        ElementwiseOps.dropoutMask(be, t(x).address(), t(out).address(), ElementType.of(x.dtype()), x.numel(), seed, Dropout.threshold(p));
    }

    @Override
    public void fill(Tensor x, double value) {
        if (x.dtype() == DType.I32 && value == 0) {
            be.zero(t(x).address(), DType.I32.byteSize(x.numel()));
            return;
        }
        requireFloating(x);
        ElementwiseOps.fill(be, t(x).address(), ElementType.of(x.dtype()), value, x.numel());
    }

    @Override
    public void copy(Tensor src, Tensor dst) {
        requireNumel(dst, src.numel(), "copy destination");
        CudaTensor s = t(src), d = t(dst);
        if (src.dtype() == dst.dtype() && src.dtype() != DType.NF4) {
            be.copyDevice(d.address(), s.address(), src.dtype().byteSize(src.numel()));
            return;
        }
        requireFloating(dst);
        requireReadable(src);
        Conversions.read(be, s, 0, src.numel(), d.address(), ElementType.of(dst.dtype()));
    }

    @Override
    public void addRowVector(Tensor x, Tensor bias) {
        requireFloating(x, bias);
        requireNumel(bias, x.shape().cols(), "bias");
        ElementwiseOps.addRowVector(be, x, bias, x.shape().rows(), x.shape().cols());
    }

    @Override
    public void sumRows(Tensor x, Tensor out, boolean accumulate) {
        requireFloating(x, out);
        requireNumel(out, x.shape().cols(), "sumRows output");
        Reductions.sumRows(be, t(x), t(out), x.shape().rows(), x.shape().cols(), accumulate);
    }

    @Override
    public double sumOfSquares(Tensor x) {
        requireFloating(x);
        return Reductions.sumOfSquares(be, t(x));
    }
}
