package dev.jsloth.model;

/**
 * How to pick new tokens: {@code temperature == 0} is greedy (the first most likely token, as {@code argmax});
 * otherwise logits are divided by the temperature, restricted to the {@code topK} largest (ties kept; 0 = off),
 * then to the smallest set whose probability reaches {@code topP} (nucleus sampling), and sampled with a generator
 * seeded by {@code seed}, in transformers' order. The constructor without {@code topK} leaves it off (the CLI's
 * {@code --top-k} defaults to 50, as transformers' GenerationConfig). Generation stops after
 * {@code maxNewTokens}, or after any of {@code stopTokenIds} (end of sequence, end of turn) is produced.
 */
public record GenerationOptions(int maxNewTokens, double temperature, double topP, int topK, long seed, int[] stopTokenIds) {
    public GenerationOptions {
        if (topK < 0) throw new IllegalArgumentException("top_k must be >= 0 (0: off), got " + topK);
        if (maxNewTokens < 0) throw new IllegalArgumentException("maxNewTokens must be >= 0, got " + maxNewTokens);
        // NaN fails every comparison: it is refused here, not sampled from (it made every probability NaN)
        if (!(temperature >= 0) || Double.isInfinite(temperature))
            throw new IllegalArgumentException("temperature must be a finite number >= 0, got " + temperature);
        if (!(topP > 0 && topP <= 1)) throw new IllegalArgumentException("top_p must be in (0, 1], got " + topP);
        stopTokenIds = stopTokenIds == null ? new int[0] : stopTokenIds.clone();
    }

    /** Without top-k. */
    public GenerationOptions(int maxNewTokens, double temperature, double topP, long seed, int[] stopTokenIds) {
        this(maxNewTokens, temperature, topP, 0, seed, stopTokenIds);
    }

    public static GenerationOptions greedy(int maxNewTokens) {
        return new GenerationOptions(maxNewTokens, 0, 1, 0, 0, new int[0]);
    }

    public boolean stopsAt(int token) {
        for (int s : stopTokenIds) if (s == token) return true;
        return false;
    }
}
