package dev.jsloth.cpu;

import dev.jsloth.api.AdamWStep;
import dev.jsloth.api.AttentionDims;
import dev.jsloth.api.DType;
import dev.jsloth.api.KernelArguments;
import dev.jsloth.api.Kernels;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.ops.Dropout;

import java.lang.foreign.MemorySegment;

import static dev.jsloth.api.KernelArguments.requireFloating;
import static dev.jsloth.api.KernelArguments.requireNumel;

/** The CPU backend's {@link Kernels}: argument checks, then the kernel classes of this package. */
final class CpuKernels implements Kernels {
    private final CpuBackend be;

    CpuKernels(CpuBackend be) {
        this.be = be;
    }

    private Buffer buf(Tensor t) {
        return new Buffer(be.seg(t), be.codec(t));
    }

    private Buffer optional(Tensor t) {
        return t == null ? null : buf(t);
    }

    // ---------------------------------------------------------------- GEMM

    @Override
    public void gemm(boolean transA, boolean transB, double alpha, Tensor a, Tensor b, double beta, Tensor c) {
        gemmInto(transA, transB, alpha, a, 0, b, 0, beta, c, 0, a.shape().rows(), a.shape().cols(),
                b.shape().rows(), b.shape().cols(), c.shape().rows(), c.shape().cols());
    }

    /**
     * The wider of the two: every operand is widened to F32 (or read as F64) as the GEMM packs it, so F32 factors and
     * F32 rank-r products cost no more than 16-bit ones, and the adapter's path is not rounded to 16 bits (bf16 LoRA
     * gradients' worst cosine against the float64 goldens, three fixture seeds x three models: 3.5-9.3e-4 with the
     * path in bf16, against PEFT's own 1.8-9.2e-4 in bf16 with F32 adapters; see NOTES, session 22).
     */
    @Override
    public DType lowRankType(DType input, DType parameters) {
        return Kernels.wider(input, parameters);
    }

    /**
     * With an F32 C and both operands packed, the low-rank pair is concatenated along K with the base product inside
     * one GEMM ({@link GemmF32#fusesLowRank}): op(L) scaled by lowScale / alpha while packed, so the pair costs no
     * product and no pass over C of its own (decoding's products, {@link GemmFewRows}, add it after). Otherwise (or with {@code -Djsloth.cpu.fuseLowRank=false}, for
     * comparisons) the two products of the default.
     */
    @Override
    public void gemmPlusLowRank(boolean transA, boolean transB, double alpha, Tensor a, Tensor b, double lowScale, Tensor l,
                                boolean transL, Tensor r, double beta, Tensor c) {
        if (c == a || c == b || c == l || c == r) throw new IllegalArgumentException("GEMM output must not alias an input");
        if (a.shape().rank() != 2 || b.shape().rank() != 2 || l.shape().rank() != 2 || r.shape().rank() != 2 || c.shape().rank() != 2) {
            Kernels.super.gemmPlusLowRank(transA, transB, alpha, a, b, lowScale, l, transL, r, beta, c); // its gemms say what is wrong
            return;
        }
        Matrix ma = matrix(a, transA), mb = operandB(b, transB), ml = matrix(l, transL), mr = matrix(r, transB);
        int m = ma.opRows(), k = ma.opCols(), n = mb.opCols(), rank = ml.opCols();
        float factor = (float) (lowScale / alpha); // L's scale in the packing; alpha scales the whole tile after
        boolean fused = FUSE_LOW_RANK && c.dtype() == DType.F32 && (float) alpha != 0 && lowScale != 0 && Float.isFinite(factor)
                && mb.opRows() == k && ml.opRows() == m && mr.opRows() == rank
                && mr.opCols() == n && c.shape().rows() == m && c.shape().cols() == n && GemmF32.fusesLowRank(m, n, k, rank, ma, mb);
        if (!fused) {
            Kernels.super.gemmPlusLowRank(transA, transB, alpha, a, b, lowScale, l, transL, r, beta, c);
            return;
        }
        MemorySegment cv = be.seg(c).asSlice(0, 4L * m * n);
        if (beta != 0) prescale(new Buffer(cv, ElementCodec.F32), beta, (long) m * n);
        GemmF32.multiply(m, n, k, (float) alpha, ma, mb, ml, mr, rank, factor, cv, beta == 0);
    }

    private static final boolean FUSE_LOW_RANK = !"false".equals(System.getProperty("jsloth.cpu.fuseLowRank"));

    private Matrix matrix(Tensor t, boolean trans) {
        return matrix(t, trans, null);
    }

    /** A whole tensor as the B operand, with its kept panels when it is frozen. */
    private Matrix operandB(Tensor t, boolean trans) {
        return matrix(t, trans, be.panels(t));
    }

    private Matrix matrix(Tensor t, boolean trans, PanelCache panels) {
        return new Matrix(be.seg(t), be.codec(t), 0, Math.toIntExact(t.shape().rows()), t.shape().cols(), trans, panels);
    }

    @Override
    public void gemmBatched(boolean transA, boolean transB, double alpha, Tensor a, Tensor b, double beta, Tensor c) {
        int batch = KernelArguments.checkBatched(a, b, c);
        long ar = a.shape().dim(1), ac = a.shape().dim(2), br = b.shape().dim(1), bc = b.shape().dim(2);
        long cr = c.shape().dim(1), cc = c.shape().dim(2);
        for (int i = 0; i < batch; i++) {
            gemmInto(transA, transB, alpha, a, i * ar * ac, b, i * br * bc, beta, c, i * cr * cc, ar, ac, br, bc, cr, cc);
        }
    }

    private void gemmInto(boolean transA, boolean transB, double alpha, Tensor a, long aBase, Tensor b, long bBase,
                          double beta, Tensor c, long cBase, long ar, long ac, long br, long bc, long cr, long cc) {
        requireFloating(c);
        Matrix ma = new Matrix(be.seg(a), be.codec(a), aBase, Math.toIntExact(ar), Math.toIntExact(ac), transA);
        Matrix mb = new Matrix(be.seg(b), be.codec(b), bBase, Math.toIntExact(br), Math.toIntExact(bc), transB,
                bBase == 0 && b.numel() == br * bc ? be.panels(b) : null); // a batch's slices are packed per product
        int m = ma.opRows(), k = ma.opCols(), n = mb.opCols();
        if (mb.opRows() != k || cr != m || cc != n)
            throw new IllegalArgumentException("GEMM shapes do not agree: op(A) " + m + "x" + k + ", op(B) " + mb.opRows() + "x" + n
                    + ", C " + cr + "x" + cc + " (A " + a.shape() + (transA ? "^T" : "") + ", B " + b.shape() + (transB ? "^T" : "") + ", C " + c.shape() + ")");
        if (a == c || b == c) throw new IllegalArgumentException("GEMM output must not alias an input");
        MemorySegment cs = be.seg(c);
        long count = (long) m * n;
        switch (c.dtype()) {
            case F64 -> {
                MemorySegment cv = cs.asSlice(cBase * 8, count * 8);
                prescale(new Buffer(cv, ElementCodec.F64), beta, count);
                GemmF64.multiply(m, n, k, alpha, ma, mb, cv);
            }
            case F32 -> {
                MemorySegment cv = cs.asSlice(cBase * 4, count * 4);
                if (beta != 0) prescale(new Buffer(cv, ElementCodec.F32), beta, count);
                GemmF32.multiply(m, n, k, (float) alpha, ma, mb, cv, beta == 0); // beta = 0: the GEMM's first pass stores
            }
            default -> { // 16-bit output: accumulate in an F32 scratch, then round once
                try (Tensor tmp = be.allocateForOverwrite(DType.F32, Shape.of(m, n))) { // copied into or stored whole
                    Buffer cb = new Buffer(cs.asSlice(cBase * 2, count * 2), ElementCodec.of(c.dtype()));
                    Buffer tb = buf(tmp);
                    if (beta != 0) {
                        ElementwiseKernels.copy(cb, tb, count);
                        prescale(tb, beta, count);
                    }
                    GemmF32.multiply(m, n, k, (float) alpha, ma, mb, be.seg(tmp), beta == 0);
                    ElementwiseKernels.copy(tb, cb, count);
                }
            }
        }
    }

    private static void prescale(Buffer c, double beta, long count) {
        if (beta == 0) c.seg().fill((byte) 0);
        else if (beta != 1) ElementwiseKernels.scale(c, beta, count);
    }

    // ---------------------------------------------------------------- norms and activations

    @Override
    public void rmsNormForward(Tensor x, Tensor weight, double eps, Tensor y, Tensor rstd) {
        requireFloating(x, weight, y, rstd);
        KernelArguments.checkRmsNormForward(x, weight, y, rstd);
        int d = x.shape().cols();
        int n = Math.toIntExact(x.shape().rows());
        if (anyF64(x, weight, y, rstd)) NormKernels.rmsNormForward(buf(x), buf(weight), eps, buf(y), buf(rstd), n, d);
        else NormF32.rmsNormForward(buf(x), buf(weight), eps, buf(y), buf(rstd), n, d);
    }

    @Override
    public void rmsNormBackward(Tensor dy, Tensor x, Tensor weight, Tensor rstd, Tensor dx, Tensor dWeight) {
        rmsNormBackwardWithResidual(dy, x, weight, rstd, null, dx, dWeight);
    }

    /** The residual's row added in the norm's pass: dx rounded once. A null residual adds nothing. */
    @Override
    public void rmsNormBackwardWithResidual(Tensor dy, Tensor x, Tensor weight, Tensor rstd, Tensor residual, Tensor dx, Tensor dWeight) {
        requireFloating(dy, x, weight, rstd, residual, dx, dWeight);
        KernelArguments.checkRmsNormBackwardWithResidual(dy, x, weight, rstd, residual, dx, dWeight);
        int d = x.shape().cols();
        int n = Math.toIntExact(x.shape().rows());
        if (dWeight != null || anyF64(dy, x, weight, rstd, dx) || residual != null && residual.dtype() == DType.F64)
            NormKernels.rmsNormBackward(buf(dy), buf(x), buf(weight), buf(rstd), optional(residual), buf(dx), optional(dWeight), n, d);
        else NormF32.rmsNormBackward(buf(dy), buf(x), buf(weight), buf(rstd), optional(residual), buf(dx), n, d);
    }

    @Override
    public void rope(Tensor x, Tensor cos, Tensor sin, int heads, boolean inverse) {
        requireFloating(x, cos, sin);
        int headDim = KernelArguments.checkRope(x, cos, sin, heads);
        int n = Math.toIntExact(x.shape().rows());
        if (anyF64(x, cos, sin)) NormKernels.rope(buf(x), buf(cos), buf(sin), n, heads, headDim, inverse);
        else NormF32.rope(buf(x), buf(cos), buf(sin), n, heads, headDim, inverse);
    }

    @Override
    public void swigluForward(Tensor gate, Tensor up, Tensor out) {
        requireFloating(gate, up, out);
        KernelArguments.checkSameNumel("SwiGLU operand", gate, up, out);
        if (anyF64(gate, up, out)) NormKernels.swigluForward(buf(gate), buf(up), buf(out), gate.numel());
        else SwiGluF32.forward(buf(gate), buf(up), buf(out), gate.numel());
    }

    @Override
    public void swigluBackward(Tensor dOut, Tensor gate, Tensor up, Tensor dGate, Tensor dUp) {
        requireFloating(dOut, gate, up, dGate, dUp);
        KernelArguments.checkSameNumel("SwiGLU operand", gate, dOut, up, dGate, dUp);
        if (anyF64(dOut, gate, up, dGate, dUp)) NormKernels.swigluBackward(buf(dOut), buf(gate), buf(up), buf(dGate), buf(dUp), gate.numel());
        else SwiGluF32.backward(buf(dOut), buf(gate), buf(up), buf(dGate), buf(dUp), gate.numel());
    }

    // ---------------------------------------------------------------- attention

    private AttentionKernel.Dims checkAttention(AttentionDims d, Tensor q, Tensor k, Tensor v, Tensor segments, Tensor lse) {
        KernelArguments.checkAttention(d, q, k, v, segments, lse);
        return new AttentionKernel.Dims(d.batch(), d.seq(), d.qHeads(), d.kvHeads(), d.headDim(), d.kvSeq());
    }

    /**
     * Whether any of these is F64: attention, SwiGLU, RMSNorm, RoPE and cross-entropy's backward then run in double
     * precision (the gradient checks' path), else in single (the backward's lse, always F64 from the fused loss, is left
     * out: its output, dLogits, decides).
     */
    private static boolean anyF64(Tensor... ts) {
        for (Tensor t : ts) if (t.dtype() == DType.F64) return true;
        return false;
    }

    @Override
    public void attentionForward(AttentionDims d, Tensor q, Tensor k, Tensor v, Tensor segments, double scale, Tensor out, Tensor lse) {
        AttentionKernel.Dims dims = checkAttention(d, q, k, v, segments, lse);
        requireNumel(out, d.queryElements(), "attention out");
        MemorySegment segs = segments == null ? null : be.seg(segments);
        if (anyF64(q, k, v, out)) AttentionF64.forward(dims, buf(q), buf(k), buf(v), segs, scale, buf(out), buf(lse));
        else AttentionKernel.forward(dims, buf(q), buf(k), buf(v), segs, scale, buf(out), buf(lse));
    }

    @Override
    public void attentionBackward(AttentionDims d, Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor segments, double scale,
                                  Tensor out, Tensor lse, Tensor dq, Tensor dk, Tensor dv) {
        AttentionKernel.Dims dims = checkAttention(d, q, k, v, segments, lse);
        KernelArguments.checkAttentionBackward(d, dOut, out, dq, dk, dv);
        MemorySegment segs = segments == null ? null : be.seg(segments);
        if (anyF64(q, k, v, out, dOut, dq, dk, dv))
            AttentionF64.backward(dims, buf(dOut), buf(q), buf(k), buf(v), segs, scale, buf(out), buf(lse), buf(dq), buf(dk), buf(dv));
        else AttentionKernel.backward(dims, buf(dOut), buf(q), buf(k), buf(v), segs, scale, buf(out), buf(lse), buf(dq), buf(dk), buf(dv));
    }

    // ---------------------------------------------------------------- loss

    @Override
    public void crossEntropyForward(Tensor logits, Tensor labels, int ignoreIndex, Tensor loss, Tensor lse) {
        requireFloating(logits, loss, lse);
        int[] y = KernelArguments.checkCrossEntropyForward(be, logits, labels, ignoreIndex, loss, lse);
        CrossEntropyKernel.forward(buf(logits), y, ignoreIndex, buf(loss), buf(lse), y.length, logits.shape().cols());
    }

    @Override
    public void crossEntropyBackward(Tensor logits, Tensor labels, Tensor lse, int ignoreIndex, double scale, Tensor dLogits) {
        requireFloating(logits, lse, dLogits);
        int[] y = KernelArguments.checkCrossEntropyBackward(be, logits, labels, lse, ignoreIndex, dLogits);
        if (anyF64(logits, dLogits)) CrossEntropyKernel.backward(buf(logits), y, buf(lse), ignoreIndex, scale, buf(dLogits), y.length, logits.shape().cols());
        else CrossEntropyF32.backward(buf(logits), y, buf(lse), ignoreIndex, scale, buf(dLogits), y.length, logits.shape().cols());
    }

    // ---------------------------------------------------------------- embedding

    @Override
    public void embeddingForward(Tensor table, Tensor ids, Tensor out) {
        requireFloating(table, out);
        int[] idv = KernelArguments.checkEmbedding(be, table, ids, out, "embedding output");
        int dim = table.shape().cols();
        ElementwiseKernels.embeddingForward(buf(table), idv, buf(out), Math.toIntExact(table.shape().rows()), dim);
    }

    @Override
    public void embeddingBackward(Tensor dOut, Tensor ids, Tensor dTable) {
        requireFloating(dOut, dTable);
        int[] idv = KernelArguments.checkEmbedding(be, dTable, ids, dOut, "embedding dOut");
        int dim = dTable.shape().cols();
        ElementwiseKernels.embeddingBackward(buf(dOut), idv, buf(dTable), dim);
    }

    // ---------------------------------------------------------------- optimizer and elementwise

    @Override
    public void adamw(Tensor param, Tensor grad, Tensor m, Tensor v, AdamWStep step) {
        requireFloating(param, grad, m, v);
        KernelArguments.checkSameNumel("AdamW operand", param, grad, m, v);
        ElementwiseKernels.adamw(buf(param), buf(grad), buf(m), buf(v), step, param.numel());
    }

    @Override
    public void add(Tensor a, Tensor b, Tensor out) {
        requireFloating(a, b, out);
        requireNumel(b, a.numel(), "add operand");
        requireNumel(out, a.numel(), "add output");
        ElementwiseKernels.add(buf(a), buf(b), buf(out), a.numel());
    }

    @Override
    public void axpy(double alpha, Tensor x, Tensor y) {
        requireFloating(x, y);
        requireNumel(y, x.numel(), "axpy y");
        ElementwiseKernels.axpy(alpha, buf(x), buf(y), x.numel());
    }

    @Override
    public void scale(Tensor x, double alpha) {
        requireFloating(x);
        ElementwiseKernels.scale(buf(x), alpha, x.numel());
    }

    @Override
    public void dropoutMask(Tensor x, double p, long seed, Tensor out) {
        KernelArguments.checkDropoutMask(x, p, out);
        ElementwiseKernels.dropoutMask(buf(x), buf(out), x.numel(), seed, Dropout.threshold(p));
    }

    @Override
    public void fill(Tensor x, double value) {
        if (x.dtype() == DType.I32 && value == 0) {
            be.seg(x).fill((byte) 0);
            return;
        }
        requireFloating(x);
        ElementwiseKernels.fill(buf(x), value, x.numel());
    }

    @Override
    public void copy(Tensor src, Tensor dst) {
        requireNumel(dst, src.numel(), "copy destination");
        if (src.dtype() == dst.dtype() && src.dtype() != DType.NF4) {
            MemorySegment.copy(be.seg(src), 0, be.seg(dst), 0, src.dtype().byteSize(src.numel()));
            return;
        }
        requireFloating(dst);
        ElementwiseKernels.copy(buf(src), buf(dst), src.numel());
    }

    @Override
    public void addRowVector(Tensor x, Tensor bias) {
        requireFloating(x, bias);
        requireNumel(bias, x.shape().cols(), "bias");
        ElementwiseKernels.addRowVector(buf(x), buf(bias), x.shape().rows(), x.shape().cols());
    }

    @Override
    public void sumRows(Tensor x, Tensor out, boolean accumulate) {
        requireFloating(x, out);
        requireNumel(out, x.shape().cols(), "sumRows output");
        ElementwiseKernels.sumRows(buf(x), buf(out), x.shape().rows(), x.shape().cols(), accumulate);
    }

    @Override
    public double sumOfSquares(Tensor x) {
        requireFloating(x);
        return ElementwiseKernels.sumOfSquares(buf(x), x.numel());
    }
}
