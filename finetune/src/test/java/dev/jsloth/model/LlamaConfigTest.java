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
                {"\"rope_scaling\":{\"type\":\"longrope\",\"factor\":4.0}", "rope_scaling.rope_type"},
                {"\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0,\"partial_rotary_factor\":0.5}", "rope_scaling.partial_rotary_factor"},
                {"\"partial_rotary_factor\":0.5,\"rope_scaling\":{\"type\":\"yarn\",\"factor\":2.0}", "partial_rotary_factor"},
                {"\"attention_dropout\":1.0", "attention_dropout"},
                {"\"original_max_position_embeddings\":0,\"rope_scaling\":{\"type\":\"yarn\",\"factor\":2.0}", "original_max_position_embeddings"},
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

    /**
     * Fields transformers reads around the rope parameters: swish is SiLU; a top-level original_max_position_embeddings
     * is copied over the parameters' (llama3 and yarn), llama3 without one takes max_position_embeddings; a rope_theta
     * inside the older rope_scaling wins over the top-level one; partial_rotary_factor is ignored by the default type;
     * dynamic NTK equals the default frequencies within max_position_embeddings and refuses positions past it;
     * attention_dropout is kept for the trainer, which refuses it above 0.
     */
    @Test
    void fieldsAroundTheRopeParametersAreReadAsTransformersReadsThem() throws Exception {
        assertEquals(16, parse("{" + BASE + ",\"hidden_act\":\"swish\"}").headDim());
        String llama3 = "\"rope_type\":\"llama3\",\"rope_theta\":500000.0,\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0";
        assertEquals(1024, parse("{" + BASE + ",\"max_position_embeddings\":8192,\"original_max_position_embeddings\":1024,"
                + "\"rope_parameters\":{" + llama3 + ",\"original_max_position_embeddings\":2048}}").rope().originalMaxPositions());
        assertEquals(4096, parse("{" + BASE + ",\"max_position_embeddings\":4096,\"rope_parameters\":{" + llama3 + "}}").rope().originalMaxPositions());
        assertEquals(4096, parse("{" + BASE + ",\"max_position_embeddings\":32768,\"original_max_position_embeddings\":4096,"
                + "\"rope_parameters\":{\"rope_type\":\"yarn\",\"factor\":8.0}}").rope().originalMaxPositions());
        assertEquals(500000.0, parse("{" + BASE + ",\"rope_theta\":10000.0,\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":2.0,"
                + "\"rope_theta\":500000.0}}").rope().theta());
        assertEquals("default", parse("{" + BASE + ",\"partial_rotary_factor\":0.5}").rope().type());
        LlamaConfig dyn = parse("{" + BASE + ",\"max_position_embeddings\":64,\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":2.0}}");
        assertEquals("dynamic", dyn.rope().type());
        org.junit.jupiter.api.Assertions.assertArrayEquals(dev.jsloth.api.ops.RopeTables.inverseFrequencies(
                dev.jsloth.api.ops.RopeTables.Config.standard(10000), 16), dev.jsloth.api.ops.RopeTables.inverseFrequencies(dyn.rope(), 16));
        try (dev.jsloth.api.Backend be = dev.jsloth.api.spi.Backends.create("cpu")) {
            dev.jsloth.api.ops.RopeTables.compute(be, dev.jsloth.api.DType.F32, dyn.rope(), 16, new int[]{0, 63}).close();
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> dev.jsloth.api.ops.RopeTables.compute(be, dev.jsloth.api.DType.F32, dyn.rope(), 16, new int[]{0, 64}));
            assertTrue(e.getMessage().contains("position 64 is past max_position_embeddings 64"), e.getMessage());
        }
        LlamaConfig dropping = parse("{" + BASE + ",\"attention_dropout\":0.1}");
        assertEquals(0.1, dropping.attentionDropout());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> dev.jsloth.train.FineTuneJob.refuseAttentionDropout(dropping, FILE));
        assertTrue(e.getMessage().contains("config.json: attention_dropout 0.1 is not supported for training"), e.getMessage());
        dev.jsloth.train.FineTuneJob.refuseAttentionDropout(parse("{" + BASE + ",\"attention_dropout\":0.0}"), FILE);
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
