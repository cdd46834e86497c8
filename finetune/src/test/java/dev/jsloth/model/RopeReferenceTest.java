package dev.jsloth.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.jsloth.api.ops.RopeTables;
import dev.jsloth.io.Json;
import org.junit.jupiter.api.Test;

import java.io.InputStream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * RoPE's inverse frequencies against Hugging Face transformers' {@code LlamaRotaryEmbedding} (its float32
 * {@code inv_freq} and {@code attention_scaling}, written by {@code tools/gpu/rope_reference.py} into
 * {@code hf-rope/inv_freq.json}), for the default, linear, llama3 and yarn rope types, each config read in both forms
 * (transformers 5's {@code rope_parameters}, and the older top-level {@code rope_theta} with {@code rope_scaling}).
 * Within one float32 ulp, nearly all bit for bit: the frequencies are computed in float32 as transformers does, except
 * that torch's float32 {@code pow} (1-ulp accurate) and {@code Math.pow} rounded to float can differ in the last bit.
 */
class RopeReferenceTest {
    @Test
    void inverseFrequenciesMatchTransformers() throws Exception {
        JsonNode ref;
        try (InputStream in = RopeReferenceTest.class.getResourceAsStream("/hf-rope/inv_freq.json")) {
            ref = Json.MAPPER.readTree(in);
        }
        int checked = 0, worstUlps = 0, exact = 0, total = 0;
        for (JsonNode c : ref.get("cases")) {
            int headDim = c.get("head_dim").asInt();
            ObjectNode params = (ObjectNode) c.get("rope_parameters");
            String type = params.get("rope_type").asText();
            String base = "\"hidden_size\":" + 4 * headDim + ",\"intermediate_size\":64,\"num_hidden_layers\":1,"
                    + "\"num_attention_heads\":4,\"head_dim\":" + headDim + ",\"vocab_size\":32,\"max_position_embeddings\":"
                    + c.get("max_position_embeddings").asInt();
            // the transformers 5 form, and the older one (rope_theta at the top, the rest under rope_scaling)
            ObjectNode older = params.deepCopy();
            older.remove("rope_theta");
            String v5 = "{" + base + ",\"rope_parameters\":" + params + "}";
            String v4 = "{" + base + ",\"rope_theta\":" + params.get("rope_theta") + ",\"rope_scaling\":" + older + "}";
            if (type.equals("default")) v4 = "{" + base + ",\"rope_theta\":" + params.get("rope_theta") + "}";
            for (String json : new String[]{v5, v4}) {
                LlamaConfig config = LlamaConfigTest.parse(json);
                assertEquals(type, config.rope().type(), json);
                float[] ours = RopeTables.inverseFrequencies(config.rope(), headDim);
                JsonNode want = c.get("inv_freq");
                assertEquals(want.size(), ours.length, json);
                for (int i = 0; i < ours.length; i++) {
                    int ulps = Math.abs(Float.floatToIntBits((float) want.get(i).asDouble()) - Float.floatToIntBits(ours[i]));
                    worstUlps = Math.max(worstUlps, ulps);
                    assertTrue(ulps <= 1, type + " head_dim " + headDim + " inv_freq[" + i + "]: ours " + ours[i]
                            + ", transformers " + want.get(i) + " (" + ulps + " ulps)");
                    if (ulps == 0) exact++;
                    total++;
                }
                assertEquals(c.get("attention_scaling").asDouble(), config.rope().attentionScaling(), 1e-15, json);
                checked++;
            }
        }
        assertTrue(checked >= 18, "cases checked: " + checked);
        System.out.printf("[rope] %d configs, %d of %d frequencies bit-identical to transformers, worst %d ulp%n", checked, exact,
                total, worstUlps);
    }

    /**
     * Whole config.json files as transformers' {@code AutoConfig.from_pretrained} reads them ({@code configs} in the
     * same file): a top-level original_max_position_embeddings over the parameters', llama3 without one, the older
     * rope_scaling form with and without its own rope_theta, partial_rotary_factor, dynamic NTK, and llama3 at 16
     * random small sizes (its wavelength arithmetic: torch divides a number by a tensor as a reciprocal and a multiply).
     * Where transformers refuses the config, so must this; where it runs one with a rope type this engine does not
     * support (longrope), the refusal must name the rope type.
     */
    @Test
    void wholeConfigsReadAsTransformersReadsThem() throws Exception {
        JsonNode ref;
        try (InputStream in = RopeReferenceTest.class.getResourceAsStream("/hf-rope/inv_freq.json")) {
            ref = Json.MAPPER.readTree(in);
        }
        int checked = 0, refused = 0, exact = 0, total = 0;
        for (JsonNode c : ref.get("configs")) {
            String name = c.get("name").asText();
            JsonNode config = c.get("config");
            if (c.has("error")) {
                assertThrows(dev.jsloth.io.CheckpointFormatException.class, () -> LlamaConfig.parse(LlamaConfigTest.FILE, config),
                        name + ": transformers refuses it (" + c.get("error").asText() + ")");
                refused++;
                continue;
            }
            LlamaConfig parsed;
            try {
                parsed = LlamaConfig.parse(LlamaConfigTest.FILE, config);
            } catch (dev.jsloth.io.CheckpointFormatException e) {
                assertTrue(name.equals("longrope") && e.getMessage().contains("rope_type"), name + ": " + e.getMessage());
                refused++;
                continue;
            }
            float[] ours = RopeTables.inverseFrequencies(parsed.rope(), parsed.headDim());
            JsonNode want = c.get("inv_freq");
            assertEquals(want.size(), ours.length, name);
            for (int i = 0; i < ours.length; i++) {
                int ulps = Math.abs(Float.floatToIntBits((float) want.get(i).asDouble()) - Float.floatToIntBits(ours[i]));
                assertTrue(ulps <= 1, name + " inv_freq[" + i + "]: ours " + ours[i] + ", transformers " + want.get(i) + " (" + ulps + " ulps)");
                if (ulps == 0) exact++;
                total++;
            }
            assertEquals(c.get("attention_scaling").asDouble(), parsed.rope().attentionScaling(), 1e-15, name);
            checked++;
        }
        assertEquals(27, checked + refused, "configs in the reference file");
        assertTrue(checked >= 25, "configs compared: " + checked);
        System.out.printf("[rope] %d whole configs compared (%d refused as transformers does or by rope type), %d of %d frequencies"
                + " bit-identical%n", checked, refused, exact, total);
    }
}
