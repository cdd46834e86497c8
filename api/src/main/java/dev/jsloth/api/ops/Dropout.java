package dev.jsloth.api.ops;

/**
 * LoRA dropout's masks, the same bits on every backend ({@link dev.jsloth.api.Kernels#dropoutMask}): element i of a
 * tensor is kept when the top 24 bits of {@code splitmix64(seed + (i + 1) * 0x9E3779B97F4A7C15)} are at least
 * {@code threshold(p) = round(p * 2^24)}, and dropout's {@code 1 / (1 - p)} ({@link #scale}) is applied by whoever reads
 * the masked tensor (PEFT's {@code nn.Dropout} before {@code lora_A} scales the kept elements themselves: the same
 * product). The mask is a function of (seed, index) alone and is never stored: a checkpointed recompute, and a
 * backward pass without the forward's masked copy ({@link LoraLinear.Saved#maskedX}), draw it again. Each adapted
 * projection mixes the pass's seed with a stream number of its own ({@link #seed}), so no two projections share a mask.
 */
public final class Dropout {
    private static final long GOLDEN = 0x9E3779B97F4A7C15L;
    private static final int BITS = 24;

    private Dropout() {
    }

    /** Checks a dropout probability: in [0, 1). */
    public static double check(double p) {
        if (!(p >= 0 && p < 1)) throw new IllegalArgumentException("dropout probability must be in [0, 1), got " + p);
        return p;
    }

    /** The drop threshold on 24-bit draws: an element whose draw is below it is dropped. */
    public static int threshold(double p) {
        return (int) Math.round(check(p) * (1 << BITS));
    }

    /** The scale of a kept element, {@code 1 / (1 - p)}. */
    public static double scale(double p) {
        return 1.0 / (1.0 - check(p));
    }

    /** The 24-bit draw of element {@code index} under {@code seed}: splitmix64 as written, the reference. */
    public static int draw(long seed, long index) {
        long z = seed + (index + 1) * GOLDEN;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        z ^= z >>> 31;
        return (int) (z >>> (64 - BITS));
    }

    /**
     * Element {@code index}'s counter under {@code seed}, {@code seed + (index + 1) * golden}; the next element's is
     * {@link #next}'s, so a loop over consecutive elements adds instead of multiplying.
     */
    public static long counter(long seed, long index) {
        return seed + (index + 1) * GOLDEN;
    }

    /** The counter of the element after the one whose counter is {@code counter}. */
    public static long next(long counter) {
        return counter + GOLDEN;
    }

    /**
     * {@link #draw} from an element's {@link #counter}. splitmix64's last step, {@code z ^= z >>> 31}, leaves the top
     * 24 bits as they are, so it is left out here (the GPU kernels do the same).
     */
    public static int drawAt(long counter) {
        long z = (counter ^ (counter >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return (int) (z >>> (64 - BITS));
    }

    /** Whether element {@code index} is kept under {@code seed} at {@code threshold}. */
    public static boolean keeps(long seed, long index, int threshold) {
        return draw(seed, index) >= threshold;
    }

    /** The seed whose draw for index i is {@code seed}'s draw for index {@code first + i}. */
    public static long at(long seed, long first) {
        return seed + first * GOLDEN;
    }

    /**
     * LoRA dropout in one pass: the pass's seed (0: no dropout, as in evaluation and inference) and the place of the
     * pass's first token in the whole batch. A data-parallel rank's share of a batch starts past the other ranks'
     * tokens, so each token meets the mask that one process with the whole batch would give it.
     */
    public record Pass(long seed, long firstToken) {
        public static final Pass NONE = new Pass(0, 0);

        public Pass {
            if (firstToken < 0) throw new IllegalArgumentException("first token must be >= 0, got " + firstToken);
        }

        /**
         * The mask seed of a projection with dropout stream {@code stream} whose input has {@code features} columns (0 in a
         * pass without dropout; a mixed value of 0 is taken as 1).
         */
        public long maskSeed(long stream, int features) {
            if (seed == 0) return 0;
            long s = at(Dropout.seed(seed, stream), firstToken * features);
            return s == 0 ? 1 : s;
        }
    }

    /**
     * The mask seed of one projection in one pass: the pass's seed mixed with the projection's stream number (never 0,
     * which means no dropout).
     */
    public static long seed(long passSeed, long stream) {
        long z = passSeed ^ (stream + 1) * GOLDEN;
        z = (z ^ (z >>> 33)) * 0xFF51AFD7ED558CCDL;
        z = (z ^ (z >>> 33)) * 0xC4CEB9FE1A85EC53L;
        z ^= z >>> 33;
        return z == 0 ? 1 : z;
    }
}
