package dev.jsloth.model;

import com.fasterxml.jackson.databind.JsonNode;
import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.spi.Backends;
import dev.jsloth.io.Json;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.stream.StreamSupport;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Decoding with a sliding window (Mistral's {@code sliding_window}): a tiny random Mistral with a window of 4 tokens,
 * greedy from a 4-token prompt, against transformers 5.17 (float64, eager attention; {@code fixtures/mistral-window},
 * made by the reference stack on the GPU machine with tools/gpu/make-test-fixtures.py). Its expected ids with the window differ from the ids without it from
 * the third token on, so attending to the whole cache fails this test.
 */
class SlidingWindowGenerationTest {
    static int[] ints(JsonNode n) {
        return StreamSupport.stream(n.spliterator(), false).mapToInt(JsonNode::asInt).toArray();
    }

    @Test
    void greedyDecodingSeesOnlyTheWindow() throws Exception {
        Path dir = Path.of(SlidingWindowGenerationTest.class.getResource("/fixtures/mistral-window").toURI());
        JsonNode expected = Json.read(dir.resolve("expected.json"));
        int[] prompt = ints(expected.get("prompt")), window = ints(expected.get("window_ids")), full = ints(expected.get("full_ids"));
        assertFalse(Arrays.equals(window, full), "the fixture's window must change the greedy tokens");
        try (Backend be = Backends.create("cpu"); LlamaModel m = LlamaModel.load(dir, be, DType.F64)) {
            assertTrue(m.config().slidingWindow() == 4, "window " + m.config().slidingWindow());
            assertArrayEquals(window, m.generate(prompt, GenerationOptions.greedy(window.length), null));
            // past max_position_embeddings (64 here) it warns and goes on, as transformers does; an absurd request is refused
            // before anything is allocated
            assertTrue(m.generate(prompt, GenerationOptions.greedy(70), null).length == 70);
            var e = assertThrows(IllegalArgumentException.class, () -> m.generate(prompt, GenerationOptions.greedy(1 << 30), null));
            assertTrue(e.getMessage().contains("ask for fewer new tokens"), e.getMessage());
        }
    }
}
