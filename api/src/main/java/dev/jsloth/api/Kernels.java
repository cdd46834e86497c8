package dev.jsloth.api;

/**
 * The compute primitives every backend implements: the SPI beneath the operators in
 * {@link dev.jsloth.api.ops}. The maths of each forward and backward is derived and documented there; this
 * interface states the data contract.
 *
 * <p>Common rules. Tensors are row-major and contiguous; "viewed as a matrix" means {@code [rows, cols]} with
 * cols the last dimension. Floating tensors may be F32, F64, BF16 or F16; a kernel computes in F64 when its
 * output is F64 and in at least F32 otherwise, and rounds to the output's type on store. Index tensors are
 * I32. Output tensors are written, never resized; "accumulate" means {@code +=}. Unless a method says so,
 * outputs must not alias inputs. Shape mismatches throw {@link IllegalArgumentException}.
 */
public interface Kernels {

    // ---------------------------------------------------------------- linear algebra

    /**
     * {@code C = alpha * op(A) * op(B) + beta * C} with {@code op(X) = X} or {@code X^T}; A, B, C viewed as
     * matrices. With {@code beta = 0} C's old contents are ignored (NaN included).
     */
    void gemm(boolean transA, boolean transB, double alpha, Tensor a, Tensor b, double beta, Tensor c);

    /**
     * {@link #gemm} for each of {@code batch} independent matrices: A, B, C are viewed as
     * {@code [batch, rows, cols]} with rows*cols taken from their last two dimensions.
     */
    void gemmBatched(boolean transA, boolean transB, double alpha, Tensor a, Tensor b, double beta, Tensor c);

    /**
     * {@code C = alpha * op(A) op(B) + lowScale * op(L) op(R) + beta * C}: a product plus a low-rank one with the same
     * transposes into the same C, op(L) {@code M x r} and op(R) {@code r x N} (LoRA's {@code Y = X W^T + s (XA) B^T}
     * and {@code dX = dY W + s (dY B) A}). This default forms the low-rank product into C first (rounded to C's
     * type), then adds the full product with beta 1; a backend may form both in one pass (C written once). C must not
     * alias an input: checked before anything is written.
     */
    default void gemmPlusLowRank(boolean transA, boolean transB, double alpha, Tensor a, Tensor b, double lowScale, Tensor l,
                                 Tensor r, double beta, Tensor c) {
        gemmPlusLowRank(transA, transB, alpha, a, b, lowScale, l, transA, r, beta, c);
    }

    /**
     * {@link #gemmPlusLowRank} with L's transpose given apart from A's: {@code C = alpha * op(A) op(B) + lowScale *
     * op_transL(L) op(R) + beta * C}: LoRA's rank-r products kept transposed, {@code [r, tokens]}, as projections that
     * share an input stack them ({@code dX = dY W + G^T A} with {@code G = s (dY B)^T}, transL true).
     */
    default void gemmPlusLowRank(boolean transA, boolean transB, double alpha, Tensor a, Tensor b, double lowScale, Tensor l,
                                 boolean transL, Tensor r, double beta, Tensor c) {
        if (c == a || c == b || c == l || c == r) throw new IllegalArgumentException("GEMM output must not alias an input");
        gemm(transL, transB, lowScale, l, r, beta, c);
        gemm(transA, transB, alpha, a, b, 1.0, c);
    }

    /**
     * {@code D = alpha * op(A) op(B) + lowScale * op(L) op(R) + C}: {@link #gemmPlusLowRank} into a separate output D
     * with C (read, never written) added, for a projection whose output joins a residual connection (Llama's o and down
     * projections: {@code y = x + attn W_o^T + LoRA}). L and R may both be null (no low-rank term). This default forms
     * the products into D, then adds C (a pass over D of its own); a backend may fold C into a product instead. D must
     * not alias an input, and C must have D's size: both checked before anything is written.
     */
    default void gemmPlusLowRankAdding(boolean transA, boolean transB, double alpha, Tensor a, Tensor b, double lowScale, Tensor l,
                                       Tensor r, Tensor c, Tensor d) {
        KernelArguments.checkLowRankAdding(a, b, l, r, c, d);
        if (l == null) gemm(transA, transB, alpha, a, b, 0.0, d);
        else gemmPlusLowRank(transA, transB, alpha, a, b, lowScale, l, r, 0.0, d);
        add(d, c, d);
    }

    /**
     * The type LoRA's rank-r path runs in on this backend, for 16-bit (or other) activations of type {@code input} and
     * adapter parameters of type {@code parameters}: the factors A and B as the products read them, and the rank-r
     * products {@code X A^T} and {@code dY B} (LoraLinear, SharedInputLora). This default is the input's type: the
     * factors are rounded once per pass and the products stay on the plain 16-bit GEMM path. The backends here return
     * the wider of the two (the CPU's GEMM widens every operand as it reads it; the GPUs' tensor cores take F32 operands
     * as bf16 parts), so that nothing on the adapter's path is rounded to 16 bits, as PEFT keeps it (its adapters
     * computed in F32 on a bf16 model).
     */
    default DType lowRankType(DType input, DType parameters) {
        return input;
    }

    /** The wider of two floating types (for {@link #lowRankType}): the one with more bits, else {@code a}. */
    static DType wider(DType a, DType b) {
        return b.bits() > a.bits() ? b : a;
    }

    // ---------------------------------------------------------------- normalization and activations

    /** {@code rstd_i = 1/sqrt(mean_j x_ij^2 + eps); y_ij = w_j * x_ij * rstd_i}. x, y {@code [n, d]}; w {@code [d]}; rstd {@code [n]}. */
    void rmsNormForward(Tensor x, Tensor weight, double eps, Tensor y, Tensor rstd);

    /**
     * {@code dx_i = rstd_i * (g_i - xhat_i * mean_j(g_ij * xhat_ij))} with {@code g = dy * w} and
     * {@code xhat = x * rstd}; if {@code dWeight} is non-null, {@code dWeight_j += sum_i dy_ij * xhat_ij}.
     */
    void rmsNormBackward(Tensor dy, Tensor x, Tensor weight, Tensor rstd, Tensor dx, Tensor dWeight);

    /**
     * {@link #rmsNormBackward} with a residual branch's gradient added: {@code dx = (the norm's dx) + residual}, for a
     * block whose input feeds both its norm and, unchanged, its output (Llama's pre-norm blocks). residual is
     * {@code [n, d]} like dx and must not alias it (null: nothing added). This default forms the norm's dx, then adds
     * (dx rounded twice); a backend may add in the same pass.
     */
    default void rmsNormBackwardWithResidual(Tensor dy, Tensor x, Tensor weight, Tensor rstd, Tensor residual, Tensor dx,
                                             Tensor dWeight) {
        KernelArguments.checkRmsNormBackwardWithResidual(dy, x, weight, rstd, residual, dx, dWeight);
        rmsNormBackward(dy, x, weight, rstd, dx, dWeight);
        if (residual != null) add(dx, residual, dx);
    }

    /**
     * Rotary embedding in place, Hugging Face's rotate-half layout: x is {@code [n, heads*headDim]}, cos and sin
     * {@code [n, headDim/2]} per token; for each head, with halves x1, x2:
     * {@code x1' = x1*cos - x2*sin, x2' = x2*cos + x1*sin}. {@code inverse} rotates by the negative angle
     * (which is the backward pass).
     */
    void rope(Tensor x, Tensor cos, Tensor sin, int heads, boolean inverse);

    /** {@code out = silu(gate) * up}, {@code silu(g) = g * sigmoid(g)}; all the same shape. */
    void swigluForward(Tensor gate, Tensor up, Tensor out);

    /**
     * {@code dGate = dOut * up * sigmoid(g) * (1 + g*(1 - sigmoid(g)))}, {@code dUp = dOut * silu(g)}.
     */
    void swigluBackward(Tensor dOut, Tensor gate, Tensor up, Tensor dGate, Tensor dUp);

    // ---------------------------------------------------------------- attention

    /**
     * Causal grouped-query attention. Query position i of a sequence attends to key positions {@code j <= i}
     * with {@code segments[b,j] == segments[b,i]} when {@code segments} (I32 {@code [batch, seq]}) is given
     * (packed batches), else to every {@code j <= i}. {@code out = softmax(scale * q k^T) v};
     * {@code lse} ({@code [batch, qHeads, seq]}) receives each row's log-sum-exp of the scaled scores, so the
     * backward pass needs no stored probability matrix. With {@code dims.kvSeq() > dims.seq()} (decoding with a
     * KV cache; no segments) query i is at position {@code kvSeq - seq + i}.
     */
    void attentionForward(AttentionDims dims, Tensor q, Tensor k, Tensor v, Tensor segments, double scale,
                          Tensor out, Tensor lse);

    /**
     * Gradients of {@link #attentionForward}: with {@code P = exp(scale*qk^T - lse)},
     * {@code D_i = sum(dOut_i * out_i)}, {@code dS = P * (dOut v^T - D)}: {@code dq = scale * dS k},
     * {@code dk = scale * dS^T q}, {@code dv = P^T dOut}, summed over the query heads of a group. dq, dk, dv
     * are overwritten. Requires {@code kvSeq == seq}.
     */
    void attentionBackward(AttentionDims dims, Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor segments,
                           double scale, Tensor out, Tensor lse, Tensor dq, Tensor dk, Tensor dv);

    // ---------------------------------------------------------------- loss

    /**
     * Per-row cross-entropy: {@code lse_i = log sum_c exp(logits_ic)}, {@code loss_i = lse_i - logits_i,label_i},
     * or 0 where {@code labels_i == ignoreIndex}. logits {@code [n, vocab]}, labels I32 {@code [n]}, loss and lse
     * {@code [n]}. A label outside {@code [0, vocab)} other than ignoreIndex is an error.
     */
    void crossEntropyForward(Tensor logits, Tensor labels, int ignoreIndex, Tensor loss, Tensor lse);

    /**
     * {@code dLogits_ic = scale * (exp(logits_ic - lse_i) - [c == label_i])}, 0 on ignored rows. {@code dLogits}
     * may be {@code logits} itself (computed in place).
     */
    void crossEntropyBackward(Tensor logits, Tensor labels, Tensor lse, int ignoreIndex, double scale,
                              Tensor dLogits);

    // ---------------------------------------------------------------- embedding

    /** {@code out[i,:] = table[ids[i],:]}; an id outside {@code [0, vocab)} is an error. */
    void embeddingForward(Tensor table, Tensor ids, Tensor out);

    /** {@code dTable[ids[i],:] += dOut[i,:]} (repeated ids accumulate). */
    void embeddingBackward(Tensor dOut, Tensor ids, Tensor dTable);

    // ---------------------------------------------------------------- optimizer

    /** One AdamW update of {@code param} in place, with moments m and v (same shape) updated in place. */
    void adamw(Tensor param, Tensor grad, Tensor m, Tensor v, AdamWStep step);

    // ---------------------------------------------------------------- elementwise

    /** {@code out = a + b}; out may alias a or b. */
    void add(Tensor a, Tensor b, Tensor out);

    /** {@code y += alpha * x}. */
    void axpy(double alpha, Tensor x, Tensor y);

    /** {@code x *= alpha} in place. */
    void scale(Tensor x, double alpha);

    /**
     * Dropout's mask: {@code out[i] = x[i]} where element i is kept ({@link dev.jsloth.api.ops.Dropout#keeps} with
     * {@code seed} and {@code Dropout.threshold(p)}), else 0; exact in every type, the same bits on every backend. The
     * caller applies dropout's {@code 1 / (1 - p)} where it is cheapest (LoRA: in the products that read the masked
     * tensor). x and out have one type and element count; out may be x. p in [0, 1).
     */
    void dropoutMask(Tensor x, double p, long seed, Tensor out);

    void fill(Tensor x, double value);

    /** Copies {@code src} into {@code dst} (same element count), converting the element type. */
    void copy(Tensor src, Tensor dst);

    /** {@code x[i,:] += bias} for every row of x viewed as a matrix. */
    void addRowVector(Tensor x, Tensor bias);

    /** {@code out[j] = sum_i x[i,j]} (or {@code +=} when accumulate) over x viewed as a matrix. */
    void sumRows(Tensor x, Tensor out, boolean accumulate);

    /** {@code sum x^2} in double; NaN or infinity if any element is not finite. */
    double sumOfSquares(Tensor x);
}
