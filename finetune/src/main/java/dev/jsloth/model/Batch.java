package dev.jsloth.model;

import dev.jsloth.api.ops.CrossEntropy;

/**
 * A rectangular batch of token ids, {@code batch x seq} flattened row-major, with labels aligned to the inputs
 * (the model shifts them by one, as {@code LlamaForCausalLM} does; -100 = ignored). {@code segments} (optional)
 * marks packed sequences: attention stays within a segment and positions restart at each segment start.
 */
public record Batch(int batch, int seq, int[] inputIds, int[] labels, int[] segments) {
    public Batch {
        if (batch <= 0 || seq <= 0) throw new IllegalArgumentException("batch and sequence length must be positive");
        long n = (long) batch * seq;
        if (inputIds.length != n) throw new IllegalArgumentException(inputIds.length + " input ids for a " + batch + "x" + seq + " batch");
        if (labels == null) labels = inputIds.clone();
        if (labels.length != n) throw new IllegalArgumentException(labels.length + " labels for a " + batch + "x" + seq + " batch");
        if (segments != null && segments.length != n) throw new IllegalArgumentException(segments.length + " segment ids for a " + batch + "x" + seq + " batch");
    }

    /** A batch from rows of equal length; {@code labels} may be null (then the inputs are the labels). */
    public static Batch of(int[][] ids, int[][] labels) {
        int b = ids.length;
        if (b == 0) throw new IllegalArgumentException("empty batch");
        int t = ids[0].length;
        int[] flat = new int[b * t];
        int[] lab = labels == null ? null : new int[b * t];
        for (int i = 0; i < b; i++) {
            if (ids[i].length != t) throw new IllegalArgumentException("row " + i + " has " + ids[i].length + " tokens, row 0 has " + t);
            System.arraycopy(ids[i], 0, flat, i * t, t);
            if (labels != null) {
                if (labels[i].length != t) throw new IllegalArgumentException("labels row " + i + " has " + labels[i].length + " entries, expected " + t);
                System.arraycopy(labels[i], 0, lab, i * t, t);
            }
        }
        return new Batch(b, t, flat, lab, null);
    }

    /** Labels shifted left by one within each row: position t is scored on label t+1; the last is ignored. */
    public int[] shiftedLabels() {
        int[] out = new int[labels.length];
        for (int b = 0; b < batch; b++) {
            for (int t = 0; t < seq; t++) {
                out[b * seq + t] = t + 1 < seq ? labels[b * seq + t + 1] : CrossEntropy.IGNORE_INDEX;
            }
        }
        return out;
    }

    /** Position ids: 0..seq-1 per row, restarting at every segment start when packed. */
    public int[] positions() {
        int[] pos = new int[inputIds.length];
        for (int b = 0; b < batch; b++) {
            for (int t = 0; t < seq; t++) {
                int i = b * seq + t;
                boolean restart = t == 0 || (segments != null && segments[i] != segments[i - 1]);
                pos[i] = restart ? 0 : pos[i - 1] + 1;
            }
        }
        return pos;
    }

    /** Tokens whose (shifted) label counts towards the loss. */
    public long countedTokens() {
        return CrossEntropy.countTargets(shiftedLabels());
    }

    /** Rows {@code [from, from + count)} as a batch of their own (a data-parallel rank's share of a global batch). */
    public Batch rows(int from, int count) {
        if (from < 0 || count <= 0 || from + count > batch)
            throw new IllegalArgumentException("rows [" + from + ", " + (from + count) + ") of a batch of " + batch);
        int a = from * seq, b = (from + count) * seq;
        return new Batch(count, seq, java.util.Arrays.copyOfRange(inputIds, a, b), java.util.Arrays.copyOfRange(labels, a, b),
                segments == null ? null : java.util.Arrays.copyOfRange(segments, a, b));
    }
}
