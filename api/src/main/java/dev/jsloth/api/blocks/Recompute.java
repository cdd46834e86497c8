package dev.jsloth.api.blocks;

/**
 * What a checkpointed decoder layer recomputes before its backward, against what it keeps from its forward (per
 * token and layer, in the activation type; {@code kv} = key/value width, r = LoRA rank). Each level recomputes less
 * than the one before and keeps more; all give the same gradients bit for bit. Under every policy the MLP's three
 * rank-r products ({@code X A^T} of gate, up and down: {@code 3 r}) are kept as well: forming them again would read
 * the MLP's input twice and its SwiGLU output once for a few hundred KB.
 */
public enum Recompute {
    /** Everything from the layer input, as Hugging Face's gradient checkpointing does. Keeps {@code hidden + 3 r}. */
    ALL,
    /**
     * Everything but the attention kernel (its output and log-sum-exp are kept): the costliest part of the forward
     * at long sequences. Keeps {@code 2 hidden + 3 r + heads x 2} (the lse in F32).
     */
    ALL_BUT_ATTENTION,
    /**
     * The MLP half only (and the attention half's RMSNorm): the attention half's projections, rotated queries and
     * keys, values, attention output and output are kept, so only the gate and up products are recomputed (about
     * half of the layer's forward flops in Llama shapes, 49-54%, instead of all of them). Keeps {@code 4 hidden + 2 kv + 7 r + heads x 2}.
     */
    MLP;

    /** The CLI spelling: lower case with dashes. */
    public String cliName() {
        return name().toLowerCase(java.util.Locale.ROOT).replace('_', '-');
    }

    public static Recompute parse(String s) {
        for (Recompute r : values()) if (r.cliName().equals(s) || r.name().equalsIgnoreCase(s)) return r;
        throw new IllegalArgumentException("recompute policy must be one of all, all-but-attention, mlp; got '" + s + "'");
    }
}
