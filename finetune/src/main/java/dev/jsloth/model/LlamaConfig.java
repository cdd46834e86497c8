package dev.jsloth.model;

import com.fasterxml.jackson.databind.JsonNode;
import dev.jsloth.api.ops.RopeTables;
import dev.jsloth.io.CheckpointFormatException;
import dev.jsloth.io.Json;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Set;

/**
 * The architecture of a Llama-family checkpoint, read from Hugging Face's {@code config.json}. Both rotary
 * forms are read: transformers 5's {@code rope_parameters} and the older top-level {@code rope_theta} +
 * {@code rope_scaling}. Fields that would change the maths and are not supported are errors naming the file and
 * field, never silently ignored. {@code slidingWindow} (Mistral) is kept: sequences longer than it are refused,
 * since within the window sliding attention equals full causal attention. {@code attentionDropout} is kept for the
 * trainer, which refuses to train with it above 0 (transformers drops attention probabilities while training; this
 * engine does not).
 */
public record LlamaConfig(String modelType, int hiddenSize, int intermediateSize, int numLayers, int numHeads,
                          int numKvHeads, int headDim, int vocabSize, double rmsNormEps, RopeTables.Config rope,
                          boolean tieWordEmbeddings, int maxPositionEmbeddings, boolean qkvBias, boolean outputBias,
                          boolean mlpBias, Integer slidingWindow, Integer bosTokenId, Integer eosTokenId, String torchDtype,
                          double attentionDropout) {

    private static final Set<String> MODEL_TYPES = Set.of("llama", "mistral", "qwen2");

    /**
     * Every end-of-sequence id a model directory names: {@code config.json}'s {@code eos_token_id} (an integer or a list:
     * all of them, where the record keeps the first) and then {@code generation_config.json}'s, as transformers'
     * {@code generate} stops at any of them (Llama 3.1's instruct models list end of text, end of message and end of
     * turn). Empty where neither file names one.
     */
    public static java.util.List<Integer> eosTokenIds(Path dir) throws IOException {
        java.util.LinkedHashSet<Integer> ids = new java.util.LinkedHashSet<>();
        for (String name : java.util.List.of("config.json", "generation_config.json")) {
            Path f = dir.resolve(name);
            if (!java.nio.file.Files.isRegularFile(f)) continue;
            JsonNode n = Json.read(f).get("eos_token_id");
            if (n == null || n.isNull()) continue;
            for (JsonNode e : n.isArray() ? n : java.util.List.of(n)) {
                if (!e.isIntegralNumber() || !e.canConvertToInt() || e.asInt() < 0)
                    throw new CheckpointFormatException(f, "eos_token_id", "must be a non-negative integer or a list of them, got " + n);
                ids.add(e.asInt());
            }
        }
        return java.util.List.copyOf(ids);
    }

    public static LlamaConfig read(Path dir) throws IOException {
        Path file = dir.resolve("config.json");
        return parse(file, Json.read(file));
    }

    public static LlamaConfig parse(Path file, JsonNode c) throws CheckpointFormatException {
        if (!c.isObject()) throw new CheckpointFormatException(file, "", "config must be a JSON object");
        String type = text(file, c, "model_type", "llama");
        if (!MODEL_TYPES.contains(type))
            throw new CheckpointFormatException(file, "model_type", "'" + type + "' is not supported (supported: " + MODEL_TYPES + ")");
        String act = text(file, c, "hidden_act", "silu");
        if (!act.equals("silu") && !act.equals("swish")) // transformers' ACT2FN maps both to SiLU
            throw new CheckpointFormatException(file, "hidden_act", "'" + act + "' is not supported (only silu / swish)");
        int hidden = positive(file, c, "hidden_size", null);
        int inter = positive(file, c, "intermediate_size", null);
        int layers = positive(file, c, "num_hidden_layers", null);
        int heads = positive(file, c, "num_attention_heads", null);
        int kv = positive(file, c, "num_key_value_heads", heads);
        if (heads % kv != 0)
            throw new CheckpointFormatException(file, "num_key_value_heads", kv + " does not divide num_attention_heads " + heads);
        Integer headDimField = c.hasNonNull("head_dim") ? positive(file, c, "head_dim", null) : null;
        if (headDimField == null && hidden % heads != 0)
            throw new CheckpointFormatException(file, "hidden_size", hidden + " is not divisible by num_attention_heads " + heads + " and no head_dim is given");
        int headDim = headDimField != null ? headDimField : hidden / heads;
        if (headDim % 2 != 0) throw new CheckpointFormatException(file, "head_dim", headDim + " must be even for rotary embeddings");
        int vocab = positive(file, c, "vocab_size", null);
        double eps = number(file, c, "rms_norm_eps", 1e-6);
        if (!(eps > 0)) throw new CheckpointFormatException(file, "rms_norm_eps", "must be positive");
        int maxPos = positive(file, c, "max_position_embeddings", 2048);
        boolean tie = bool(file, c, "tie_word_embeddings", false);
        boolean attnBias = bool(file, c, "attention_bias", false);
        boolean mlpBias = bool(file, c, "mlp_bias", false);
        boolean qkvBias = type.equals("qwen2") || attnBias;
        boolean oBias = attnBias && !type.equals("qwen2");
        Integer window = null; // Mistral uses its window; Qwen2 only when use_sliding_window is true
        if (c.hasNonNull("sliding_window") && bool(file, c, "use_sliding_window", !type.equals("qwen2")))
            window = positive(file, c, "sliding_window", null);
        int tp = c.hasNonNull("pretraining_tp") ? positive(file, c, "pretraining_tp", 1) : 1; // same maths for any tp
        if (tp < 1) throw new CheckpointFormatException(file, "pretraining_tp", "must be positive");
        RopeTables.Config rope = rope(file, c, maxPos);
        double attentionDropout = number(file, c, "attention_dropout", 0.0);
        if (!(attentionDropout >= 0 && attentionDropout < 1))
            throw new CheckpointFormatException(file, "attention_dropout", attentionDropout + " is not in [0, 1)");
        String dtype = c.hasNonNull("dtype") ? c.get("dtype").asText() : c.hasNonNull("torch_dtype") ? c.get("torch_dtype").asText() : null;
        return new LlamaConfig(type, hidden, inter, layers, heads, kv, headDim, vocab, eps, rope, tie, maxPos, qkvBias, oBias,
                mlpBias, window, optionalInt(file, c, "bos_token_id"), optionalInt(file, c, "eos_token_id"), dtype, attentionDropout);
    }

    private static RopeTables.Config rope(Path file, JsonNode c, int maxPositions) throws CheckpointFormatException {
        JsonNode params = c.get("rope_parameters");
        String prefix;
        double theta;
        JsonNode scaling;
        if (params != null && params.isObject()) {
            prefix = "rope_parameters.";
            theta = number(file, params, "rope_theta", c.hasNonNull("rope_theta") ? c.get("rope_theta").asDouble() : 10000.0, prefix);
            scaling = params;
        } else {
            prefix = "rope_scaling.";
            scaling = c.get("rope_scaling");
            if (scaling != null && !scaling.isNull() && !scaling.isObject())
                throw new CheckpointFormatException(file, "rope_scaling", "must be an object or null");
            if (scaling == null || scaling.isNull()) {
                theta = number(file, c, "rope_theta", 10000.0);
                if (!(theta > 0)) throw new CheckpointFormatException(file, "rope_theta", "must be positive");
                return RopeTables.Config.standard(theta);
            }
            // transformers turns rope_scaling into the parameters and fills rope_theta from the top only where it is missing
            theta = scaling.hasNonNull("rope_theta") ? number(file, scaling, "rope_theta", null, prefix) : number(file, c, "rope_theta", 10000.0);
        }
        if (!(theta > 0)) throw new CheckpointFormatException(file, prefix + "rope_theta", "must be positive");
        String type = scaling.hasNonNull("rope_type") ? scaling.get("rope_type").asText()
                : scaling.hasNonNull("type") ? scaling.get("type").asText() : "default";
        // partial rotary embeddings: Llama's default type ignores the factor, the scaled types rotate fewer dimensions
        // than the attention applies them to (transformers cannot run such a model)
        for (JsonNode holder : new JsonNode[]{c, scaling}) {
            if (!holder.hasNonNull("partial_rotary_factor") || type.equals("default")) continue;
            String where = (holder == c ? "" : prefix) + "partial_rotary_factor";
            double f = number(file, holder, "partial_rotary_factor", null);
            if (f != 1.0) throw new CheckpointFormatException(file, where, f + " is not supported with rope_type " + type + " (only 1.0)");
        }
        // a top-level original_max_position_embeddings is copied over the rope parameters' (transformers'
        // standardize_rope_params) for the types that read it
        Integer topOriginal = null;
        if (c.hasNonNull("original_max_position_embeddings")) topOriginal = positive(file, c, "original_max_position_embeddings", null);
        return switch (type) {
            case "default" -> RopeTables.Config.standard(theta);
            case "linear" -> {
                double factor = number(file, scaling, "factor", null, prefix);
                if (!(factor > 0)) throw new CheckpointFormatException(file, prefix + "factor", "must be positive");
                yield RopeTables.Config.linear(theta, factor);
            }
            case "dynamic" -> {
                double factor = number(file, scaling, "factor", null, prefix);
                if (!(factor > 0)) throw new CheckpointFormatException(file, prefix + "factor", "must be positive");
                yield RopeTables.Config.dynamic(theta, factor, maxPositions);
            }
            case "llama3" -> {
                double factor = number(file, scaling, "factor", null, prefix);
                double low = number(file, scaling, "low_freq_factor", null, prefix);
                double high = number(file, scaling, "high_freq_factor", null, prefix);
                if (!(high > low)) throw new CheckpointFormatException(file, prefix + "high_freq_factor", "must exceed low_freq_factor");
                int original = topOriginal != null ? topOriginal : originalPositions(file, scaling, prefix, maxPositions);
                yield RopeTables.Config.llama3(theta, factor, low, high, original);
            }
            case "yarn" -> yarn(file, scaling, prefix, theta, maxPositions, topOriginal);
            default -> throw new CheckpointFormatException(file, prefix + "rope_type",
                    "'" + type + "' is not supported (supported: default, linear, dynamic, llama3, yarn)");
        };
    }

    /** {@code original_max_position_embeddings} of the rope parameters: a positive integer, or {@code maxPositions} where absent. */
    private static int originalPositions(Path file, JsonNode s, String prefix, int maxPositions) throws CheckpointFormatException {
        JsonNode orig = s.get("original_max_position_embeddings");
        if (orig == null || orig.isNull()) return maxPositions;
        if (!orig.canConvertToInt() || orig.asInt() <= 0 || !orig.isIntegralNumber())
            throw new CheckpointFormatException(file, prefix + "original_max_position_embeddings", "must be a positive integer, got " + orig);
        return orig.asInt();
    }

    /**
     * YaRN as transformers 5.17 reads it: the explicit factor; the original context from
     * {@code original_max_position_embeddings}, else {@code max_position_embeddings}; beta_fast / beta_slow 32 / 1 where
     * missing or zero; truncation on unless {@code truncate} is false; the attention factor given, or from mscale and
     * mscale_all_dim when both are non-zero, or {@code 0.1 ln(factor) + 1} (1 for a factor up to 1).
     */
    private static RopeTables.Config yarn(Path file, JsonNode s, String prefix, double theta, int maxPositions, Integer topOriginal)
            throws CheckpointFormatException {
        double factor = number(file, s, "factor", null, prefix);
        if (!(factor > 0)) throw new CheckpointFormatException(file, prefix + "factor", "must be positive");
        int original = topOriginal != null ? topOriginal : originalPositions(file, s, prefix, maxPositions);
        double betaFast = number(file, s, "beta_fast", 32.0, prefix), betaSlow = number(file, s, "beta_slow", 1.0, prefix);
        if (betaFast == 0) betaFast = 32; // transformers: `get("beta_fast") or 32`
        if (betaSlow == 0) betaSlow = 1;
        if (!(betaFast > 0) || !(betaSlow > 0))
            throw new CheckpointFormatException(file, prefix + (betaFast > 0 ? "beta_slow" : "beta_fast"), "must be positive");
        boolean truncate = bool(file, s, "truncate", true, prefix);
        double mscale = number(file, s, "mscale", 0.0, prefix), mscaleAllDim = number(file, s, "mscale_all_dim", 0.0, prefix);
        double attention = s.hasNonNull("attention_factor") ? number(file, s, "attention_factor", null, prefix)
                : mscale != 0 && mscaleAllDim != 0 ? yarnMscale(factor, mscale) / yarnMscale(factor, mscaleAllDim) : yarnMscale(factor, 1);
        if (!(attention > 0)) throw new CheckpointFormatException(file, prefix + "attention_factor", "must be positive");
        return RopeTables.Config.yarn(theta, factor, original, attention, betaFast, betaSlow, truncate);
    }

    private static double yarnMscale(double scale, double mscale) {
        return scale <= 1 ? 1.0 : 0.1 * mscale * Math.log(scale) + 1.0;
    }

    private static String text(Path f, JsonNode c, String key, String def) throws CheckpointFormatException {
        JsonNode n = c.get(key);
        if (n == null || n.isNull()) {
            if (def == null) throw new CheckpointFormatException(f, key, "missing");
            return def;
        }
        if (!n.isTextual()) throw new CheckpointFormatException(f, key, "must be a string, got " + n);
        return n.asText();
    }

    private static int positive(Path f, JsonNode c, String key, Integer def) throws CheckpointFormatException {
        JsonNode n = c.get(key);
        if (n == null || n.isNull()) {
            if (def == null) throw new CheckpointFormatException(f, key, "missing");
            return def;
        }
        if (!n.isIntegralNumber() || !n.canConvertToInt() || n.asInt() <= 0)
            throw new CheckpointFormatException(f, key, "must be a positive integer, got " + n);
        return n.asInt();
    }

    private static Integer optionalInt(Path f, JsonNode c, String key) throws CheckpointFormatException {
        JsonNode n = c.get(key);
        if (n == null || n.isNull()) return null;
        if (n.isArray() && !n.isEmpty()) n = n.get(0); // several EOS ids: the first is the default
        if (!n.isIntegralNumber() || !n.canConvertToInt()) throw new CheckpointFormatException(f, key, "must be an integer, got " + n);
        return n.asInt();
    }

    private static double number(Path f, JsonNode c, String key, Double def) throws CheckpointFormatException {
        return number(f, c, key, def, "");
    }

    private static double number(Path f, JsonNode c, String key, Double def, String prefix) throws CheckpointFormatException {
        JsonNode n = c.get(key);
        if (n == null || n.isNull()) {
            if (def == null) throw new CheckpointFormatException(f, prefix + key, "missing");
            return def;
        }
        if (!n.isNumber()) throw new CheckpointFormatException(f, prefix + key, "must be a number, got " + n);
        return n.asDouble();
    }

    private static boolean bool(Path f, JsonNode c, String key, boolean def) throws CheckpointFormatException {
        return bool(f, c, key, def, "");
    }

    private static boolean bool(Path f, JsonNode c, String key, boolean def, String prefix) throws CheckpointFormatException {
        JsonNode n = c.get(key);
        if (n == null || n.isNull()) return def;
        if (!n.isBoolean()) throw new CheckpointFormatException(f, prefix + key, "must be true or false, got " + n);
        return n.asBoolean();
    }

    public int qDim() {
        return numHeads * headDim;
    }

    public int kvDim() {
        return numKvHeads * headDim;
    }
}
