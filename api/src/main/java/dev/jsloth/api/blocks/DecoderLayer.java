package dev.jsloth.api.blocks;

import dev.jsloth.api.Tensor;
import dev.jsloth.api.autograd.BatchContext;
import dev.jsloth.api.autograd.Block;

/**
 * One Llama decoder layer: {@code y = mlp(attention(x))}, both halves residual. As a tape block it is the unit
 * of gradient checkpointing: with checkpointing on, only its input is kept between the passes.
 */
public final class DecoderLayer implements Block<DecoderLayer.Saved> {
    private final LoraAttentionBlock attention;
    private final LoraMlpBlock mlp;

    public DecoderLayer(LoraAttentionBlock attention, LoraMlpBlock mlp) {
        this.attention = attention;
        this.mlp = mlp;
    }

    public LoraAttentionBlock attention() {
        return attention;
    }

    public LoraMlpBlock mlp() {
        return mlp;
    }

    /** Both halves' saved activations and the intermediate (owned). */
    public record Saved(LoraAttentionBlock.Saved attention, Tensor mid, LoraMlpBlock.Saved mlp) implements AutoCloseable {
        @Override
        public void close() {
            mlp.close();
            attention.close();
            mid.close();
        }
    }

    @Override
    public Forward<Saved> forward(Tensor x, BatchContext ctx) {
        Forward<LoraAttentionBlock.Saved> a = attention.forward(x, ctx);
        Forward<LoraMlpBlock.Saved> m = mlp.forward(a.y(), ctx);
        return new Forward<>(m.y(), new Saved(a.saved(), a.y(), m.saved()));
    }

    /** Keeps the attention half's output across checkpointing (see {@link LoraAttentionBlock#keepForRecompute}). */
    @Override
    public AutoCloseable keepForRecompute(Saved saved) {
        return attention.keepForRecompute(saved.attention());
    }

    /** Backward's forward again: the layer output is not needed, so the MLP stops at what its backward reads. */
    @Override
    public Saved recompute(Tensor x, AutoCloseable kept, BatchContext ctx) {
        Forward<LoraAttentionBlock.Saved> a = attention.rerun(x, (LoraAttentionBlock.KeptAttention) kept, ctx);
        return new Saved(a.saved(), a.y(), mlp.recompute(a.y(), null, ctx));
    }

    /** Inference with a KV cache for the attention half; returns the layer output. */
    public Tensor forwardCached(Tensor x, BatchContext ctx, KvCache cache) {
        try (Tensor mid = attention.forwardCached(x, ctx, cache)) {
            Forward<LoraMlpBlock.Saved> m = mlp.forward(mid, ctx);
            m.saved().close();
            return m.y();
        }
    }

    @Override
    public Tensor backward(Tensor dy, Saved saved, BatchContext ctx) {
        try (Tensor dMid = mlp.backward(dy, saved.mlp(), ctx)) {
            return attention.backward(dMid, saved.attention(), ctx);
        }
    }
}
