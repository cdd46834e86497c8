/**
 * Operators built on {@link dev.jsloth.api.Kernels}, with their forward and hand-derived backward maths.
 *
 * <p>The single-kernel operators are documented on the kernel methods themselves. Their derivations:
 * <ul>
 * <li><b>RMSNorm</b> {@code y = w * x * r}, {@code r = (mean x^2 + eps)^(-1/2)}. With {@code g = dy * w} and
 * {@code xhat = x r}: {@code dr/dx_j = -r^3 x_j / d}, so {@code dx = r g - r^3 x (g.x)/d = r (g - xhat mean(g xhat))};
 * {@code dw = sum_rows dy * xhat}. Forward saves r (one scalar per row).</li>
 * <li><b>RoPE</b> is an orthogonal rotation per pair {@code (x_i, x_{i+d/2})}; its Jacobian's transpose is the
 * rotation by the negative angle, so backward applies the same kernel with {@code inverse = true}.</li>
 * <li><b>SwiGLU</b> {@code y = silu(g) u}: {@code dsilu/dg = s (1 + g (1 - s))} with {@code s = sigmoid(g)}.</li>
 * <li><b>Attention</b> {@code O = softmax(S) V}, {@code S = scale Q K^T} masked causally (and by segment):
 * {@code dV = P^T dO}, {@code dP = dO V^T}, softmax backward {@code dS = P (dP - rowsum(dO * O))} (since
 * {@code rowsum(P dP) = rowsum(dO * O)}), {@code dQ = scale dS K}, {@code dK = scale dS^T Q}; P is rebuilt in
 * backward from the saved log-sum-exp, as FlashAttention-2 does.</li>
 * <li><b>Cross-entropy</b> {@code l = lse(z) - z_y}: {@code dl/dz = softmax(z) - onehot(y)}; see
 * {@link dev.jsloth.api.ops.CrossEntropy} for the chunked, head-fused form.</li>
 * <li><b>Embedding</b> gather; backward scatter-adds rows (needed only when embeddings train).</li>
 * <li><b>AdamW</b> as {@link dev.jsloth.api.AdamWStep}.</li>
 * <li><b>LoRA linear</b>: {@link dev.jsloth.api.ops.LoraLinear}.</li>
 * </ul>
 */
package dev.jsloth.api.ops;
