package dev.jsloth.model;

import com.fasterxml.jackson.databind.JsonNode;
import dev.jsloth.io.CheckpointFormatException;
import dev.jsloth.io.Json;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** config.json in both rotary forms, head_dim precedence, and unsupported fields rejected by name. */
class LlamaConfigTest {
    static final Path FILE = Path.of("config.json");

    static LlamaConfig parse(String json) throws Exception {
        JsonNode n = Json.MAPPER.readTree(json);
        return LlamaConfig.parse(FILE, n);
    }

    static final String BASE = "\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100";

    @Test
    void transformers5RopeParameters() throws Exception {
        LlamaConfig c = parse("{" + BASE + ",\"num_key_value_heads\":2,\"rope_parameters\":{\"rope_theta\":500000.0,\"rope_type\":\"default\"}}");
        assertEquals(500000.0, c.rope().theta());
        assertEquals(16, c.headDim());
        assertEquals(2, c.numKvHeads());
    }

    @Test
    void olderRopeThetaAndLlama3Scaling() throws Exception {
        LlamaConfig c = parse("{" + BASE + ",\"rope_theta\":500000.0,\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,"
                + "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}}");
        assertEquals("llama3", c.rope().type());
        assertEquals(8.0, c.rope().factor());
        assertEquals(4, c.numKvHeads()); // defaults to num_attention_heads
        LlamaConfig v5 = parse("{" + BASE + ",\"rope_parameters\":{\"rope_theta\":500000.0,\"rope_type\":\"llama3\",\"factor\":8.0,"
                + "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}}");
        assertEquals(c.rope(), v5.rope());
        float[] inv = dev.jsloth.api.ops.RopeTables.inverseFrequencies(c.rope(), 128);
        float[] plain = dev.jsloth.api.ops.RopeTables.inverseFrequencies(dev.jsloth.api.ops.RopeTables.Config.standard(500000), 128);
        assertEquals(plain[0], inv[0]);                 // high frequencies kept
        assertEquals(plain[63] / 8f, inv[63], 1e-12f);  // low frequencies divided by the factor
    }

    @Test
    void headDimWinsOverHiddenOverHeads() throws Exception {
        assertEquals(32, parse("{" + BASE + ",\"head_dim\":32}").headDim());
    }

    @Test
    void unsupportedFieldsAreNamed() {
        String[][] cases = {
                {"\"hidden_act\":\"gelu\"", "hidden_act"},
                {"\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":4.0}", "rope_scaling.rope_type"},
                {"\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4.0,\"truncate\":\"yes\"}", "rope_scaling.truncate"},
                {"\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4.0,\"original_max_position_embeddings\":-5}",
                        "rope_scaling.original_max_position_embeddings"},
                {"\"rope_scaling\":{\"type\":\"linear\"}", "rope_scaling.factor"},
                {"\"rope_scaling\":{\"type\":\"linear\",\"factor\":0}", "rope_scaling.factor"},
                {"\"rope_parameters\":{\"rope_type\":\"linear\",\"factor\":-2.0}", "rope_parameters.factor"},
                {"\"model_type\":\"gpt2\"", "model_type"},
                {"\"num_key_value_heads\":3", "num_key_value_heads"},
                {"\"rms_norm_eps\":\"small\"", "rms_norm_eps"},
        };
        for (String[] c : cases) {
            CheckpointFormatException e = assertThrows(CheckpointFormatException.class, () -> parse("{" + BASE + "," + c[0] + "}"));
            assertTrue(e.getMessage().contains("config.json: " + c[1]), e.getMessage());
        }
        CheckpointFormatException missing = assertThrows(CheckpointFormatException.class, () -> parse("{\"hidden_size\":64}"));
        assertTrue(missing.getMessage().contains("intermediate_size"), missing.getMessage());
    }

    /** Every eos id of config.json and generation_config.json, in order without repeats; a bad one named by file and field. */
    @Test
    void eosTokenIdsFromBothFiles(@org.junit.jupiter.api.io.TempDir Path dir) throws Exception {
        java.nio.file.Files.writeString(dir.resolve("config.json"), "{\"eos_token_id\": [128001, 128008, 128009]}");
        assertEquals(java.util.List.of(128001, 128008, 128009), LlamaConfig.eosTokenIds(dir));
        java.nio.file.Files.writeString(dir.resolve("generation_config.json"), "{\"eos_token_id\": [128009, 7]}");
        assertEquals(java.util.List.of(128001, 128008, 128009, 7), LlamaConfig.eosTokenIds(dir));
        java.nio.file.Files.writeString(dir.resolve("config.json"), "{\"eos_token_id\": 2}");
        assertEquals(java.util.List.of(2, 128009, 7), LlamaConfig.eosTokenIds(dir));
        java.nio.file.Files.writeString(dir.resolve("generation_config.json"), "{\"eos_token_id\": [\"</s>\"]}");
        CheckpointFormatException e = assertThrows(CheckpointFormatException.class, () -> LlamaConfig.eosTokenIds(dir));
        assertTrue(e.getMessage().contains("generation_config.json") && e.getMessage().contains("eos_token_id"), e.getMessage());
        java.nio.file.Files.delete(dir.resolve("generation_config.json"));
        java.nio.file.Files.writeString(dir.resolve("config.json"), "{}");
        assertEquals(java.util.List.of(), LlamaConfig.eosTokenIds(dir));
    }

    @Test
    void generationOptionsRefuseNaNAndNameTheValue() {
        var e = assertThrows(IllegalArgumentException.class, () -> new GenerationOptions(4, Double.NaN, 1, 0, null));
        assertTrue(e.getMessage().contains("temperature") && e.getMessage().contains("NaN"), e.getMessage());
        assertTrue(assertThrows(IllegalArgumentException.class, () -> new GenerationOptions(4, 1, 1.5, 0, null)).getMessage().contains("1.5"));
    }
}
