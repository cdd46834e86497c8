package dev.jsloth.api;

/**
 * Sizes of a causal grouped-query attention call. Queries are laid out {@code [batch, seq, qHeads, headDim]},
 * keys and values {@code [batch, kvSeq, kvHeads, headDim]}; query head {@code h} reads key/value head
 * {@code h / (qHeads / kvHeads)}, as Hugging Face's {@code repeat_kv} does. With a KV cache
 * ({@code kvSeq > seq}) the queries are the last {@code seq} positions: query i sits at position
 * {@code kvSeq - seq + i} and sees keys {@code 0..kvSeq - seq + i}. Training uses {@code kvSeq == seq}.
 */
public record AttentionDims(int batch, int seq, int qHeads, int kvHeads, int headDim, int kvSeq) {
    public AttentionDims(int batch, int seq, int qHeads, int kvHeads, int headDim) {
        this(batch, seq, qHeads, kvHeads, headDim, seq);
    }

    public AttentionDims {
        if (batch <= 0 || seq <= 0 || qHeads <= 0 || kvHeads <= 0 || headDim <= 0 || kvSeq < seq)
            throw new IllegalArgumentException("attention sizes must be positive (and kvSeq >= seq): " + this);
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
        return (long) batch * kvSeq * kvHeads * headDim;
    }

    /** Position of the first query in the key sequence. */
    public int queryOffset() {
        return kvSeq - seq;
    }
}
