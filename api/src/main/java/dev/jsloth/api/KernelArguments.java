package dev.jsloth.api;

/**
 * The argument checks every {@link Kernels} implementation performs, in one place so that all backends reject
 * the same calls with the same messages (the conformance suite compares those messages across backends). Checks
 * that need a tensor's contents (label and id ranges) take the values the backend read back.
 */
public final class KernelArguments {
    private KernelArguments() {
    }

    public static void requireNumel(Tensor t, long numel, String what) {
        if (t.numel() != numel)
            throw new IllegalArgumentException(what + " has shape " + t.shape() + " (" + t.numel() + " elements), expected " + numel);
    }

    /** Every non-null tensor holds real numbers element by element (F32, F64, BF16, F16). */
    public static void requireFloating(Tensor... ts) {
        for (Tensor t : ts)
            if (t != null && !t.dtype().isFloating())
                throw new IllegalArgumentException("expected a floating tensor, got " + t.dtype() + " " + t.shape());
    }

    /** A dropout mask call's tensors (one floating type, not NF4; one element count) and probability. */
    public static void checkDropoutMask(Tensor x, double p, Tensor out) {
        requireFloating(x, out);
        if (x.dtype() == DType.NF4 || x.dtype() != out.dtype())
            throw new IllegalArgumentException("dropout takes and gives one floating type, got " + x.dtype() + " -> " + out.dtype());
        requireNumel(out, x.numel(), "dropout output");
        dev.jsloth.api.ops.Dropout.check(p);
    }

    public static void requireI32(Tensor t, String what) {
        if (t.dtype() != DType.I32) throw new IllegalArgumentException(what + " must be I32, got " + t.dtype());
    }

    /** Shapes and types of an attention call's inputs and saved log-sum-exp. */
    public static void checkAttention(AttentionDims d, Tensor q, Tensor k, Tensor v, Tensor segments, Tensor lse) {
        requireFloating(q, k, v, lse);
        requireNumel(q, d.queryElements(), "attention q");
        requireNumel(k, d.kvElements(), "attention k");
        requireNumel(v, d.kvElements(), "attention v");
        requireNumel(lse, (long) d.batch() * d.qHeads() * d.seq(), "attention lse");
        if (segments != null) {
            if (d.kvSeq() != d.seq()) throw new IllegalArgumentException("packed segments need kvSeq == seq, got " + d);
            if (segments.dtype() != DType.I32) throw new IllegalArgumentException("segments must be I32");
            requireNumel(segments, (long) d.batch() * d.seq(), "attention segments");
        }
    }

    /** The extra operands of attention backward (which also needs {@code kvSeq == seq}). */
    public static void checkAttentionBackward(AttentionDims d, Tensor dOut, Tensor out, Tensor dq, Tensor dk, Tensor dv) {
        if (d.kvSeq() != d.seq()) throw new IllegalArgumentException("attention backward needs kvSeq == seq (no KV cache), got " + d);
        requireFloating(dOut, out, dq, dk, dv);
        requireNumel(dOut, d.queryElements(), "attention dOut");
        requireNumel(out, d.queryElements(), "attention out");
        requireNumel(dq, d.queryElements(), "attention dq");
        requireNumel(dk, d.kvElements(), "attention dk");
        requireNumel(dv, d.kvElements(), "attention dv");
    }

    /** Labels are in {@code [0, vocab)} or equal to {@code ignoreIndex}; returns them. */
    public static int[] checkLabels(int[] labels, int vocab, int ignoreIndex) {
        for (int i = 0; i < labels.length; i++)
            if (labels[i] != ignoreIndex && (labels[i] < 0 || labels[i] >= vocab))
                throw new IllegalArgumentException("label " + labels[i] + " at row " + i + " is outside the vocabulary [0, " + vocab + ")");
        return labels;
    }

    /**
     * RoPE's rows are {@code heads} heads of an even dimension and the tables hold {@code headDim / 2} values per row
     * (after the backend's floating checks); returns the head dimension.
     */
    public static int checkRope(Tensor x, Tensor cos, Tensor sin, int heads) {
        int width = x.shape().cols();
        if (heads <= 0 || width % heads != 0 || (width / heads) % 2 != 0)
            throw new IllegalArgumentException("RoPE: row width " + width + " is not " + heads + " heads of an even dimension");
        int headDim = width / heads;
        long n = x.shape().rows();
        requireNumel(cos, n * (headDim / 2), "RoPE cos table");
        requireNumel(sin, n * (headDim / 2), "RoPE sin table");
        return headDim;
    }

    /** An I32 tensor's values as {@code be} reads them back, after checking its type. */
    public static int[] ints(Backend be, Tensor t, String what) {
        requireI32(t, what);
        return be.downloadInts(t);
    }

    /** One label per row of the logits, each a column or {@code ignoreIndex}; returns them as {@code be} reads them. */
    public static int[] checkLabels(Backend be, Tensor logits, Tensor labels, int ignoreIndex) {
        requireNumel(labels, logits.shape().rows(), "labels");
        return checkLabels(ints(be, labels, "labels"), logits.shape().cols(), ignoreIndex);
    }

    /** Cross-entropy forward's labels and per-row outputs (after the backend's floating checks); returns the labels. */
    public static int[] checkCrossEntropyForward(Backend be, Tensor logits, Tensor labels, int ignoreIndex, Tensor loss, Tensor lse) {
        int[] y = checkLabels(be, logits, labels, ignoreIndex);
        requireNumel(loss, y.length, "loss");
        requireNumel(lse, y.length, "lse");
        return y;
    }

    /** Cross-entropy backward's labels, lse and gradient (after the backend's floating checks); returns the labels. */
    public static int[] checkCrossEntropyBackward(Backend be, Tensor logits, Tensor labels, Tensor lse, int ignoreIndex, Tensor dLogits) {
        int[] y = checkLabels(be, logits, labels, ignoreIndex);
        requireNumel(lse, y.length, "lse");
        requireNumel(dLogits, logits.numel(), "dLogits");
        return y;
    }

    /**
     * An embedding call's ids (each a row of {@code table}) and its {@code [ids, dim]} operand {@code rows} (the output
     * forward, dOut backward; {@code what} names it); returns the ids as {@code be} reads them.
     */
    public static int[] checkEmbedding(Backend be, Tensor table, Tensor ids, Tensor rows, String what) {
        int[] idv = checkIds(ints(be, ids, "ids"), Math.toIntExact(table.shape().rows()));
        requireNumel(rows, (long) idv.length * table.shape().cols(), what);
        return idv;
    }

    /** Token ids are in {@code [0, vocab)}; returns them. */
    public static int[] checkIds(int[] ids, int vocab) {
        for (int i = 0; i < ids.length; i++)
            if (ids[i] < 0 || ids[i] >= vocab)
                throw new IllegalArgumentException("token id " + ids[i] + " at position " + i + " is outside the vocabulary [0, " + vocab + ")");
        return ids;
    }

    /** A batched GEMM's operands are rank 3 with one batch size; returns it. */
    public static int checkBatched(Tensor a, Tensor b, Tensor c) {
        if (a.shape().rank() != 3 || b.shape().rank() != 3 || c.shape().rank() != 3)
            throw new IllegalArgumentException("batched GEMM needs rank-3 tensors, got " + a.shape() + " " + b.shape() + " " + c.shape());
        int batch = a.shape().dim(0);
        if (b.shape().dim(0) != batch || c.shape().dim(0) != batch)
            throw new IllegalArgumentException("batch sizes differ: " + a.shape() + " " + b.shape() + " " + c.shape());
        return batch;
    }

    public static void checkRmsNormForward(Tensor x, Tensor weight, Tensor y, Tensor rstd) {
        requireNumel(weight, x.shape().cols(), "RMSNorm weight");
        requireNumel(y, x.numel(), "RMSNorm output");
        requireNumel(rstd, x.shape().rows(), "RMSNorm rstd");
    }

    public static void checkRmsNormBackward(Tensor dy, Tensor x, Tensor weight, Tensor rstd, Tensor dx, Tensor dWeight) {
        requireNumel(dy, x.numel(), "RMSNorm dy");
        requireNumel(dx, x.numel(), "RMSNorm dx");
        requireNumel(weight, x.shape().cols(), "RMSNorm weight");
        requireNumel(rstd, x.shape().rows(), "RMSNorm rstd");
        if (dWeight != null) requireNumel(dWeight, x.shape().cols(), "RMSNorm dWeight");
    }

    /** {@link #checkRmsNormBackward}, and a residual gradient (if non-null) the size of dx that is not dx itself. */
    public static void checkRmsNormBackwardWithResidual(Tensor dy, Tensor x, Tensor weight, Tensor rstd, Tensor residual, Tensor dx,
                                                        Tensor dWeight) {
        checkRmsNormBackward(dy, x, weight, rstd, dx, dWeight);
        if (residual == null) return;
        requireNumel(residual, x.numel(), "RMSNorm residual gradient");
        if (residual == dx) throw new IllegalArgumentException("the residual gradient must not alias dx");
    }

    /**
     * The arguments of {@link Kernels#gemmPlusLowRankAdding} beyond each product's own checks: L and R both or neither,
     * D aliasing no input, C floating and of D's size.
     */
    public static void checkLowRankAdding(Tensor a, Tensor b, Tensor l, Tensor r, Tensor c, Tensor d) {
        if ((l == null) != (r == null)) throw new IllegalArgumentException("the low-rank pair needs both L and R");
        if (d == a || d == b || d == l || d == r || d == c) throw new IllegalArgumentException("GEMM output must not alias an input");
        requireFloating(c);
        checkSameNumel("residual input", d, c);
    }

    /** Every tensor of {@code others} has as many elements as {@code first}. */
    public static void checkSameNumel(String what, Tensor first, Tensor... others) {
        for (Tensor t : others) requireNumel(t, first.numel(), what);
    }
}
