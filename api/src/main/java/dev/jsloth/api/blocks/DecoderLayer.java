package dev.jsloth.api.blocks;

import dev.jsloth.api.Allocations;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.autograd.BatchContext;
import dev.jsloth.api.autograd.Block;

/**
 * One Llama decoder layer: {@code y = mlp(attention(x))}, both halves residual. As a tape block it is the unit
 * of gradient checkpointing: with checkpointing on, its input and what its {@link Recompute} policy keeps stay
 * between the passes, and the rest is recomputed before its backward.
 */
public final class DecoderLayer implements Block<DecoderLayer.Saved> {
    private final LoraAttentionBlock attention;
    private final LoraMlpBlock mlp;
    private volatile Recompute recompute = Recompute.MLP;

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

    /** What checkpointing recomputes before this layer's backward (default {@link Recompute#MLP}). */
    public Recompute recompute() {
        return recompute;
    }

    public void recompute(Recompute policy) {
        recompute = java.util.Objects.requireNonNull(policy);
    }

    /**
     * What the layer keeps across checkpointing: the attention half's part, with {@link Recompute#MLP} its output, and
     * the MLP's rank-r products under every policy.
     */
    private record Kept(AutoCloseable attention, Tensor mid, LoraMlpBlock.KeptProducts mlp) implements AutoCloseable {
        @Override
        public void close() throws Exception {
            if (attention != null) attention.close();
            if (mid != null) mid.close();
            if (mlp != null) mlp.close();
        }
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
        try (Allocations made = new Allocations()) { // a failure in the MLP half frees the attention half's output and state
            Forward<LoraAttentionBlock.Saved> a = attention.forward(x, ctx);
            made.add(a.y());
            made.add(a.saved());
            Forward<LoraMlpBlock.Saved> m = mlp.forward(a.y(), ctx);
            return made.handOver(new Forward<>(m.y(), new Saved(a.saved(), a.y(), m.saved())));
        }
    }

    /** Keeps what the {@link #recompute()} policy says (see {@link LoraAttentionBlock#keep}), frees the rest. */
    @Override
    public AutoCloseable keepForRecompute(Saved saved) {
        Recompute policy = recompute;
        LoraMlpBlock.KeptProducts m = mlp.keep(saved.mlp());
        AutoCloseable a = attention.keep(saved.attention(), policy);
        Tensor mid = policy == Recompute.MLP ? saved.mid() : null;
        if (mid == null) saved.mid().close();
        return a == null && mid == null && m == null ? null : new Kept(a, mid, m);
    }

    /** Backward's forward again: the layer output is not needed, so the MLP stops at what its backward reads. */
    @Override
    public Saved recompute(Tensor x, AutoCloseable kept, BatchContext ctx) {
        Kept k = (Kept) kept;
        // a failure frees the recomputed attention half, and with it whatever of k had moved into it: k is spent either
        // way (the tape frees the rest of it and never uses it again)
        try (Allocations made = new Allocations()) {
            LoraAttentionBlock.Saved a;
            Tensor mid;
            if (k != null && k.mid() != null) {
                a = made.add(attention.resume(x, (LoraAttentionBlock.KeptHalf) k.attention(), ctx));
                mid = k.mid();
            } else {
                Forward<LoraAttentionBlock.Saved> f = attention.rerun(x, k == null ? null : (LoraAttentionBlock.KeptAttention) k.attention(), ctx);
                a = made.add(f.saved());
                mid = made.add(f.y());
            }
            return made.handOver(new Saved(a, mid, mlp.recompute(mid, k == null ? null : k.mlp(), ctx)));
        }
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

    /** The attention half stops at its parameters: no Q/K/V input products, no norm backward. */
    @Override
    public void backwardParametersOnly(Tensor dy, Saved saved, BatchContext ctx) {
        try (Tensor dMid = mlp.backward(dy, saved.mlp(), ctx)) {
            attention.backwardParametersOnly(dMid, saved.attention(), ctx);
        }
    }
}
