package dev.jsloth.model;

/**
 * How to pick new tokens: {@code temperature == 0} is greedy (the first most likely token, as {@code argmax});
 * otherwise logits are divided by the temperature, restricted to the smallest set whose probability reaches
 * {@code topP} (nucleus sampling), and sampled with a generator seeded by {@code seed}. Generation stops after
 * {@code maxNewTokens}, or at {@code eosTokenId} when {@code stopAtEos}.
 */
public record GenerationOptions(int maxNewTokens, double temperature, double topP, long seed, boolean stopAtEos, Integer eosTokenId) {
    public GenerationOptions {
        if (maxNewTokens < 0) throw new IllegalArgumentException("maxNewTokens must be >= 0");
        if (temperature < 0) throw new IllegalArgumentException("temperature must be >= 0");
        if (!(topP > 0 && topP <= 1)) throw new IllegalArgumentException("top_p must be in (0, 1]");
    }

    public static GenerationOptions greedy(int maxNewTokens) {
        return new GenerationOptions(maxNewTokens, 0, 1, 0, false, null);
    }
}
