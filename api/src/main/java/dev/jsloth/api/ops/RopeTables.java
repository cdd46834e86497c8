package dev.jsloth.api.ops;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;

/**
 * Per-token cos/sin tables for rotary position embeddings, computed as Hugging Face transformers does: the
 * inverse frequencies {@code theta^(-2i/d)} in float32 and {@code angle = inv_freq * position} in float32 (the
 * positions transformers feeds RoPE are float32). For F32 tables cos and sin are rounded to float32, as
 * transformers does; for F64 tables they are taken in double precision of that same float32 angle, so an F64 run
 * keeps full precision downstream while using exactly transformers' angles.
 *
 * <p>Rope types: {@code default}, {@code linear} (position interpolation: every frequency divided by {@code factor}),
 * {@code llama3} (frequency-dependent scaling by {@code factor} between {@code low_freq_factor} and
 * {@code high_freq_factor} wavelengths of the original context length) and {@code yarn} (a linear ramp between
 * interpolated and original frequencies over the dimensions that {@code beta_fast} and {@code beta_slow} rotations of
 * the original context length bound, and cos/sin scaled by the attention factor).
 */
public final class RopeTables {

    /**
     * Rotary configuration; {@code type} is {@code default}, {@code linear}, {@code dynamic}, {@code llama3} or {@code yarn}. The
     * frequency factors are llama3's; {@code betaFast}, {@code betaSlow} and {@code truncate} YaRN's.
     */
    public record Config(double theta, String type, double factor, double lowFreqFactor, double highFreqFactor,
                         int originalMaxPositions, double attentionScaling, double betaFast, double betaSlow, boolean truncate) {
        public static Config standard(double theta) {
            return new Config(theta, "default", 1, 1, 1, 0, 1.0, 0, 0, false);
        }

        /**
         * Dynamic NTK scaling: below {@code maxPositions} the frequencies are the default ones (transformers rescales
         * the base only for a forward pass that reaches past {@code max_position_embeddings}, which these tables refuse).
         */
        public static Config dynamic(double theta, double factor, int maxPositions) {
            return new Config(theta, "dynamic", factor, 1, 1, maxPositions, 1.0, 0, 0, false);
        }

        /** Linear scaling (position interpolation): positions count {@code 1/factor} as far. */
        public static Config linear(double theta, double factor) {
            return new Config(theta, "linear", factor, 1, 1, 0, 1.0, 0, 0, false);
        }

        public static Config llama3(double theta, double factor, double lowFreqFactor, double highFreqFactor,
                                    int originalMaxPositions) {
            return new Config(theta, "llama3", factor, lowFreqFactor, highFreqFactor, originalMaxPositions, 1.0, 0, 0, false);
        }

        /**
         * YaRN over an original context of {@code originalMaxPositions}, cos and sin scaled by {@code attentionScaling}
         * (transformers' attention factor: given, or {@code 0.1 ln(factor) + 1}, or the mscale ratio).
         */
        public static Config yarn(double theta, double factor, int originalMaxPositions, double attentionScaling, double betaFast,
                                  double betaSlow, boolean truncate) {
            return new Config(theta, "yarn", factor, 1, 1, originalMaxPositions, attentionScaling, betaFast, betaSlow, truncate);
        }
    }

    /** A pair of {@code [n, headDim/2]} tables; closing closes both. */
    public record Tables(Tensor cos, Tensor sin) implements AutoCloseable {
        @Override
        public void close() {
            cos.close();
            sin.close();
        }
    }

    private RopeTables() {
    }

    /** The float32 inverse frequencies, {@code headDim/2} of them. */
    public static float[] inverseFrequencies(Config c, int headDim) {
        if (headDim <= 0 || headDim % 2 != 0) throw new IllegalArgumentException("head_dim must be even and positive, got " + headDim);
        int half = headDim / 2;
        float[] inv = new float[half], pos = new float[half];
        float base = (float) c.theta();
        for (int i = 0; i < half; i++) {
            float exponent = (float) (2 * i) / (float) headDim;
            pos[i] = (float) Math.pow(base, exponent);
            inv[i] = 1.0f / pos[i];
        }
        switch (c.type()) {
            case "default", "dynamic" -> { }
            case "linear" -> { // transformers' _compute_linear_scaling_rope_parameters: inv_freq /= factor, in float32
                float factor = (float) c.factor();
                for (int i = 0; i < half; i++) inv[i] = inv[i] / factor;
            }
            case "llama3" -> applyLlama3(c, inv);
            case "yarn" -> applyYarn(c, headDim, pos, inv);
            default -> throw new IllegalArgumentException("unsupported rope type '" + c.type() + "' (supported: default, linear, dynamic, llama3, yarn)");
        }
        return inv;
    }

    // transformers' _compute_llama3_parameters, in float32 like the torch tensors it uses
    private static void applyLlama3(Config c, float[] inv) {
        float factor = (float) c.factor();
        float low = (float) c.lowFreqFactor();
        float high = (float) c.highFreqFactor();
        float oldLen = c.originalMaxPositions();
        float lowWavelen = oldLen / low;
        float highWavelen = oldLen / high;
        for (int i = 0; i < inv.length; i++) {
            // `2 * math.pi / inv_freq` and `old_context_len / wavelen` are a Python number over a tensor: torch's
            // __rtruediv__, a reciprocal and then a multiply (not one division)
            float wavelen = (1f / inv[i]) * (float) (2 * Math.PI);
            float llama = wavelen > lowWavelen ? inv[i] / factor : inv[i];
            float smooth = ((1f / wavelen) * oldLen - low) / (high - low);
            float smoothed = (1 - smooth) * llama / factor + smooth * llama;
            boolean medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
            inv[i] = medium ? smoothed : llama;
        }
    }

    /**
     * transformers' _compute_yarn_parameters: the correction range in double (floored and ceiled with {@code truncate}),
     * the ramp and the blend in float32 as its torch tensors; {@code inv} holds the original frequencies on entry.
     */
    private static void applyYarn(Config c, int dim, float[] pos, float[] inv) {
        double base = c.theta();
        double low = correctionDim(c.betaFast(), dim, base, c.originalMaxPositions());
        double high = correctionDim(c.betaSlow(), dim, base, c.originalMaxPositions());
        if (c.truncate()) {
            low = Math.floor(low);
            high = Math.ceil(high);
        }
        low = Math.max(low, 0);
        high = Math.min(high, dim - 1);
        if (low == high) high += 0.001; // as transformers: no division by zero
        float lowF = (float) low, span = (float) (high - low), factor = (float) c.factor();
        for (int i = 0; i < inv.length; i++) {
            float ramp = Math.min(1f, Math.max(0f, ((float) i - lowF) / span));
            float extrapolation = 1f - ramp;
            float interpolated = 1.0f / (factor * pos[i]);
            inv[i] = interpolated * (1f - extrapolation) + inv[i] * extrapolation;
        }
    }

    /** The dimension at which a frequency makes {@code rotations} turns over {@code positions} positions. */
    private static double correctionDim(double rotations, int dim, double base, int positions) {
        return dim * Math.log(positions / (rotations * 2 * Math.PI)) / (2 * Math.log(base));
    }

    /** Tables for the given token positions (one row per token). */
    public static Tables compute(Backend backend, DType dtype, Config c, int headDim, int[] positions) {
        if (c.type().equals("dynamic"))
            for (int p : positions)
                if (p >= c.originalMaxPositions())
                    throw new IllegalArgumentException("rope_type dynamic: position " + p + " is past max_position_embeddings "
                            + c.originalMaxPositions() + ", where transformers rescales the frequencies for each forward pass"
                            + " (not supported: keep sequences within max_position_embeddings)");
        float[] inv = inverseFrequencies(c, headDim);
        int half = inv.length;
        double[] cos = new double[positions.length * half];
        double[] sin = new double[positions.length * half];
        float scaling = (float) c.attentionScaling();
        // a batch repeats positions (0..seq-1 in every row): each distinct position's row is computed once
        java.util.Map<Integer, Integer> firstRow = new java.util.HashMap<>();
        for (int t = 0; t < positions.length; t++) {
            Integer seen = firstRow.putIfAbsent(positions[t], t);
            if (seen != null) {
                System.arraycopy(cos, seen * half, cos, t * half, half);
                System.arraycopy(sin, seen * half, sin, t * half, half);
                continue;
            }
            float pos = positions[t];
            for (int i = 0; i < half; i++) {
                float angle = inv[i] * pos;
                double cv = Math.cos(angle) * scaling, sv = Math.sin(angle) * scaling;
                cos[t * half + i] = dtype == DType.F64 ? cv : (float) cv;
                sin[t * half + i] = dtype == DType.F64 ? sv : (float) sv;
            }
        }
        Shape shape = Shape.of(positions.length, half);
        Tensor cosTable = backend.upload(dtype, shape, cos);
        try {
            return new Tables(cosTable, backend.upload(dtype, shape, sin));
        } catch (RuntimeException | Error e) {
            cosTable.close();
            throw e;
        }
    }
}
