package dev.jsloth.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.DynamicContainer;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertAll;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Differential cases: tokenizer.json variants derived from the two reference fixtures (other
 * pre-tokenizers, normalizers, added tokens, decoders...), with the ids and decoded texts produced
 * by the tokenizers library 0.23 (see {@code src/test/tools/tokenizer-cases.js}).
 */
class TokenizerVariantsTest {
    @TestFactory
    Stream<DynamicContainer> variants() throws IOException {
        // -Dtokenizer.variants=DIR runs another generated set (for example a larger fuzzing run).
        String override = System.getProperty("tokenizer.variants");
        Path root = override != null ? Path.of(override) : Fixtures.variants();
        List<Path> dirs;
        try (Stream<Path> list = Files.list(root)) {
            dirs = list.filter(Files::isDirectory).sorted().toList();
        }
        List<DynamicContainer> out = new ArrayList<>();
        for (Path dir : dirs) {
            Tokenizer tokenizer = Tokenizer.load(dir);
            JsonNode cases = new ObjectMapper().readTree(dir.resolve("cases.json").toFile());
            List<DynamicTest> tests = new ArrayList<>();
            for (int i = 0; i < cases.size(); i++) {
                JsonNode c = cases.get(i);
                String text = c.get("text").asText();
                String label = "#" + i + " " + abbreviate(text);
                tests.add(DynamicTest.dynamicTest(label, () -> check(tokenizer, c)));
            }
            out.add(DynamicContainer.dynamicContainer(dir.getFileName().toString(), tests));
        }
        return out.stream();
    }

    private static void check(Tokenizer tokenizer, JsonNode c) {
        String text = c.get("text").asText();
        int[] ids = ints(c.get("ids"));
        int[] idsSpecial = ints(c.get("ids_special"));
        int[] actual = tokenizer.encode(text, false);
        int[] actualSpecial = tokenizer.encode(text, true);
        assertAll(
                () -> assertArrayEquals(ids, actual, () -> "ids: got " + Arrays.toString(actual)),
                () -> assertArrayEquals(idsSpecial, actualSpecial, () -> "ids_special: got " + Arrays.toString(actualSpecial)),
                () -> assertEquals(c.get("decoded").asText(), tokenizer.decode(idsSpecial, false), "decoded"),
                () -> assertEquals(c.get("decoded_skip").asText(), tokenizer.decode(idsSpecial, true), "decoded_skip"));
    }

    private static String abbreviate(String text) {
        StringBuilder sb = new StringBuilder();
        text.codePoints().limit(40).forEach(cp -> {
            if (cp < 0x20 || (cp >= 0x7f && cp < 0xa1) || Character.getType(cp) == Character.FORMAT
                    || Character.isWhitespace(cp) && cp != ' ') {
                sb.append(String.format("\\u%04x", cp));
            } else {
                sb.appendCodePoint(cp);
            }
        });
        return sb.toString();
    }

    private static int[] ints(JsonNode array) {
        int[] out = new int[array.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = array.get(i).asInt();
        }
        return out;
    }
}
