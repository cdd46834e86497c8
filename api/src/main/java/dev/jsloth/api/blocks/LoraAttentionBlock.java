package dev.jsloth.api.blocks;

import dev.jsloth.api.Allocations;
import dev.jsloth.api.AttentionDims;
import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Kernels;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.autograd.BatchContext;
import dev.jsloth.api.autograd.Block;
import dev.jsloth.api.autograd.ParameterBuffer;
import dev.jsloth.api.ops.LoraLinear;
import dev.jsloth.api.ops.SharedInputLora;

import java.util.List;

/**
 * The attention half of a Llama decoder layer, with LoRA on its projections:
 * <pre>
 *   h = RMSNorm(x; w_in)
 *   q = rope(h Wq^T + LoRA), k = rope(h Wk^T + LoRA), v = h Wv^T + LoRA
 *   a = causal GQA attention(q, k, v)              scale = 1/sqrt(headDim)
 *   y = x + (a Wo^T + LoRA)
 * </pre>
 * Backward runs the same steps in reverse: {@code da = Lo'(dy)}, attention backward, inverse rotation of
 * dq and dk, the three projection backwards summed into dh, RMSNorm backward, plus the residual dy. Q, K and V read the
 * same h: with their A matrices stacked, their rank-r products are formed together ({@link SharedInputLora}).
 */
public final class LoraAttentionBlock implements Block<LoraAttentionBlock.Saved> {
    private final Tensor inputNorm;
    private final double eps;
    private final LoraLinear o;
    private final SharedInputLora qkv;
    private final int qHeads, kvHeads, headDim;

    public LoraAttentionBlock(Tensor inputNorm, double eps, LoraLinear q, LoraLinear k, LoraLinear v, LoraLinear o,
                              int qHeads, int kvHeads, int headDim) {
        this(inputNorm, eps, q, k, v, o, qHeads, kvHeads, headDim, null);
    }

    /** {@code qkvA}: the A matrices of q, k and v end to end (null: each projection forms its rank-r product alone). */
    public LoraAttentionBlock(Tensor inputNorm, double eps, LoraLinear q, LoraLinear k, LoraLinear v, LoraLinear o,
                              int qHeads, int kvHeads, int headDim, ParameterBuffer.Stack qkvA) {
        if (q.outFeatures() != qHeads * headDim || k.outFeatures() != kvHeads * headDim
                || v.outFeatures() != kvHeads * headDim || o.inFeatures() != qHeads * headDim)
            throw new IllegalArgumentException("projection sizes do not match " + qHeads + " query heads, "
                    + kvHeads + " key/value heads of dimension " + headDim);
        this.inputNorm = inputNorm;
        this.eps = eps;
        this.qkv = new SharedInputLora(List.of(q, k, v), qkvA);
        this.o = o;
        this.qHeads = qHeads;
        this.kvHeads = kvHeads;
        this.headDim = headDim;
    }

    /** Activations kept for backward; closing frees those the block allocated (x is the caller's). */
    public record Saved(Tensor x, Tensor h, Tensor rstd, SharedInputLora.Saved qkvs, Tensor q, Tensor k, Tensor v, Tensor attn,
                        Tensor lse, LoraLinear.Saved os) implements AutoCloseable {
        @Override
        public void close() {
            qkvs.close();
            os.close();
            for (Tensor t : new Tensor[]{h, rstd, q, k, v, attn, lse}) t.close();
        }
    }

    private AttentionDims dims(BatchContext ctx) {
        return new AttentionDims(ctx.batch(), ctx.seq(), qHeads, kvHeads, headDim);
    }

    public double scale() {
        return 1.0 / Math.sqrt(headDim);
    }

    @Override
    public Forward<Saved> forward(Tensor x, BatchContext ctx) {
        return run(x, ctx, null, null);
    }

    /** The attention output and its log-sum-exp, kept across gradient checkpointing (owned until a recompute takes them). */
    public record KeptAttention(Tensor attn, Tensor lse) implements AutoCloseable {
        @Override
        public void close() {
            attn.close();
            lse.close();
        }
    }

    /**
     * The whole attention half kept across checkpointing ({@link Recompute#MLP}): rotated queries and keys, values,
     * attention output and lse, and the four projections' rank-r products; only the RMSNorm is recomputed.
     */
    public record KeptHalf(Tensor q, Tensor k, Tensor v, Tensor attn, Tensor lse, SharedInputLora.Products qkv, Tensor oxa)
            implements AutoCloseable {
        @Override
        public void close() {
            for (Tensor t : new Tensor[]{q, k, v, attn, lse, oxa}) if (t != null) t.close();
            qkv.close();
        }
    }

    /** Keeps the attention output and lse ({@link #keep} with {@link Recompute#ALL_BUT_ATTENTION}). */
    @Override
    public AutoCloseable keepForRecompute(Saved s) {
        return keep(s, Recompute.ALL_BUT_ATTENTION);
    }

    /**
     * Takes over a forward's saved state: hands what {@code policy} keeps to the result (no copies) and frees the
     * rest. Returns null (ALL), a {@link KeptAttention} or a {@link KeptHalf}.
     */
    public AutoCloseable keep(Saved s, Recompute policy) {
        switch (policy) {
            case ALL -> {
                s.close();
                return null;
            }
            case ALL_BUT_ATTENTION -> {
                s.qkvs().close();
                s.os().close();
                for (Tensor t : new Tensor[]{s.h(), s.rstd(), s.q(), s.k(), s.v()}) t.close();
                return new KeptAttention(s.attn(), s.lse());
            }
            default -> {
                SharedInputLora.Products qkvProducts = s.qkvs().takeProducts();
                s.h().close();
                s.rstd().close();
                return new KeptHalf(s.q(), s.k(), s.v(), s.attn(), s.lse(), qkvProducts, s.os().takeXa());
            }
        }
    }

    @Override
    public Saved recompute(Tensor x, AutoCloseable kept, BatchContext ctx) {
        if (kept instanceof KeptHalf half) return resume(x, half, ctx);
        Forward<Saved> f = rerun(x, (KeptAttention) kept, ctx);
        f.y().close();
        return f.saved();
    }

    /** The forward again with the kept attention output standing in for the attention kernel (null: run it). */
    public Forward<Saved> rerun(Tensor x, KeptAttention kept, BatchContext ctx) {
        return run(x, ctx, null, kept);
    }

    /** The saved state from a kept attention half: only the RMSNorm runs again (ownership of {@code kept} passes on). */
    public Saved resume(Tensor x, KeptHalf kept, BatchContext ctx) {
        Backend be = x.backend();
        DType dt = x.dtype();
        int n = ctx.tokens();
        try (Allocations made = new Allocations()) {
            Tensor h = made.add(be.allocateForOverwrite(dt, Shape.of(n, x.shape().cols())));
            Tensor rstd = made.add(be.allocateForOverwrite(dt, Shape.of(n)));
            be.kernels().rmsNormForward(x, inputNorm, eps, h, rstd);
            SharedInputLora.Saved qkvs = made.add(qkv.savedWith(h, kept.qkv(), ctx.dropout()));
            return made.handOver(new Saved(x, h, rstd, qkvs, kept.q(), kept.k(), kept.v(), kept.attn(), kept.lse(),
                    o.savedWith(kept.attn(), kept.oxa(), ctx.dropout())));
        }
    }

    /**
     * Inference step with a KV cache (batch 1): the new tokens' keys and values are appended to the cache and
     * their queries attend to everything cached so far. Returns the block output; nothing is saved.
     */
    public Tensor forwardCached(Tensor x, BatchContext ctx, KvCache cache) {
        Forward<Saved> f = run(x, ctx, cache, null);
        f.saved().close();
        return f.y();
    }

    private Forward<Saved> run(Tensor x, BatchContext ctx, KvCache cache, KeptAttention kept) {
        Backend be = x.backend();
        Kernels kern = be.kernels();
        DType dt = x.dtype();
        int n = ctx.tokens();
        // a failure frees what this made (never kept's tensors: they stay the caller's until this returns)
        try (Allocations made = new Allocations()) {
            Tensor h = made.add(be.allocateForOverwrite(dt, Shape.of(n, x.shape().cols())));
            Tensor rstd = made.add(be.allocateForOverwrite(dt, Shape.of(n)));
            kern.rmsNormForward(x, inputNorm, eps, h, rstd);
            SharedInputLora.Forward f = qkv.forwardSaving(h, ctx.dropout());
            made.add(f.saved());
            made.addAll(f.ys());
            Tensor q = f.ys().get(0), k = f.ys().get(1), v = f.ys().get(2);
            kern.rope(q, ctx.ropeCos(), ctx.ropeSin(), qHeads, false);
            kern.rope(k, ctx.ropeCos(), ctx.ropeSin(), kvHeads, false);
            Tensor attn, lse;
            if (kept != null) { // recompute: the kept output stands in for the attention kernel
                attn = kept.attn();
                lse = kept.lse();
            } else {
                attn = made.add(be.allocateForOverwrite(dt, Shape.of(n, qHeads * headDim)));
                lse = made.add(be.allocateForOverwrite(DType.F64.equals(dt) ? DType.F64 : DType.F32, Shape.of(ctx.batch(), qHeads, ctx.seq())));
            }
            if (kept != null) {
                // nothing to compute
            } else if (cache == null) {
                kern.attentionForward(dims(ctx), q, k, v, ctx.segments(), scale(), attn, lse);
            } else {
                if (ctx.batch() != 1) throw new IllegalArgumentException("KV-cached decoding runs one sequence at a time");
                cache.append(kern, k, v);
                int visible = cache.visibleLength(ctx.seq()); // the queries are the last of the visible keys' positions
                AttentionDims d = new AttentionDims(1, ctx.seq(), qHeads, kvHeads, headDim, visible);
                kern.attentionForward(d, q, cache.keysSoFar(visible), cache.valuesSoFar(visible), null, scale(), attn, lse);
            }
            LoraLinear.Forward fo = o.forwardSavingPlus(attn, x, ctx.dropout());
            return made.handOver(new Forward<>(fo.y(), new Saved(x, h, rstd, f.saved(), q, k, v, attn, lse, fo.saved())));
        }
    }

    @Override
    public Tensor backward(Tensor dy, Saved s, BatchContext ctx) {
        return backward(dy, s, ctx, true);
    }

    /** Without dX: the Q/K/V projections' input products and the norm's backward are skipped. */
    @Override
    public void backwardParametersOnly(Tensor dy, Saved s, BatchContext ctx) {
        backward(dy, s, ctx, false);
    }

    /** dX (null without {@code inputGradient}) and the parameters' gradients. */
    private Tensor backward(Tensor dy, Saved s, BatchContext ctx, boolean inputGradient) {
        Backend be = dy.backend();
        Kernels kern = be.kernels();
        DType dt = dy.dtype();
        int n = ctx.tokens();
        Tensor dx;
        try (Tensor dAttn = o.backward(dy, s.os());
             Tensor dq = be.allocateForOverwrite(dt, s.q().shape());
             Tensor dk = be.allocateForOverwrite(dt, s.k().shape());
             Tensor dv = be.allocateForOverwrite(dt, s.v().shape())) {
            kern.attentionBackward(dims(ctx), dAttn, s.q(), s.k(), s.v(), ctx.segments(), scale(), s.attn(), s.lse(), dq, dk, dv);
            kern.rope(dq, ctx.ropeCos(), ctx.ropeSin(), qHeads, true);
            kern.rope(dk, ctx.ropeCos(), ctx.ropeSin(), kvHeads, true);
            if (!inputGradient) {
                qkv.backwardParametersOnly(List.of(dq, dk, dv), s.qkvs());
                return null;
            }
            try (Tensor dh = qkv.backward(List.of(dq, dk, dv), s.qkvs()); Allocations made = new Allocations()) {
                dx = made.add(be.allocateForOverwrite(dt, Shape.of(n, dy.shape().cols())));
                kern.rmsNormBackwardWithResidual(dh, s.x(), inputNorm, s.rstd(), dy, dx, null);
                made.handOver(dx);
            }
        }
        return dx;
    }
}
