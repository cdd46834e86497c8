package dev.jsloth.api;

/**
 * Sizes of a causal grouped-query attention call. Queries are laid out {@code [batch, seq, qHeads, headDim]},
 * keys and values {@code [batch, seq, kvHeads, headDim]}; query head {@code h} reads key/value head
 * {@code h / (qHeads / kvHeads)}, as Hugging Face's {@code repeat_kv} does.
 */
public record AttentionDims(int batch, int seq, int qHeads, int kvHeads, int headDim) {
    public AttentionDims {
        if (batch <= 0 || seq <= 0 || qHeads <= 0 || kvHeads <= 0 || headDim <= 0)
            throw new IllegalArgumentException("attention sizes must be positive: " + this);
        if (qHeads % kvHeads != 0)
            throw new IllegalArgumentException("kvHeads (" + kvHeads + ") must divide qHeads (" + qHeads + ")");
    }

    public int groupSize() {
        return qHeads / kvHeads;
    }

    public long queryElements() {
        return (long) batch * seq * qHeads * headDim;
    }

    public long kvElements() {
        return (long) batch * seq * kvHeads * headDim;
    }
}
