package dev.jsloth.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Edge cases answered by tokenizers 0.23.2 itself ({@code fixtures/tok-edge/cases.json}, written on the GPU machine by
 * {@code src/test/tools/tokenizer_edge_cases.py}): added-token ids reassigned past the vocabulary, a token listed twice,
 * matching after an rstrip token, an unk_token that is only an added token, a {@code #version} merges line, files the
 * library refuses to load; Oniguruma's word and punctuation classes in Split patterns; the Whitespace pre-tokenizer
 * (Rust's regex, not Oniguruma); and transformers 5.17's decode with {@code clean_up_tokenization_spaces}, which it
 * ignores for BPE tokenizers.
 */
class TokenizerEdgeCasesTest {
    private static JsonNode fixture() throws IOException {
        try (InputStream in = TokenizerEdgeCasesTest.class.getResourceAsStream("/fixtures/tok-edge/cases.json")) {
            return new ObjectMapper().readTree(in);
        }
    }

    private static int[] ints(JsonNode a) {
        int[] out = new int[a.size()];
        for (int i = 0; i < out.length; i++) out[i] = a.get(i).asInt();
        return out;
    }

    private static List<String> pieces(TextPattern pattern, SplitBehavior behavior, String text) {
        List<String> out = new ArrayList<>();
        for (NormalizedString ns : NormalizedString.of(text).split(pattern, behavior)) {
            if (!ns.isEmpty()) out.add(ns.get());
        }
        return out;
    }

    @Test
    void tokenizerFilesLoadEncodeAndDecodeAsTheLibraryDoes(@TempDir Path tmp) throws Exception {
        int n = 0;
        for (JsonNode c : fixture().get("cases")) {
            String name = c.get("name").asText();
            Path dir = Files.createDirectories(tmp.resolve("case" + n++));
            Files.writeString(dir.resolve("tokenizer.json"), c.get("tokenizer").toString());
            if (c.has("load_error")) {
                assertThrows(TokenizerFormatException.class, () -> Tokenizer.load(dir), name + ": the library refuses it: " + c.get("load_error").asText());
                continue;
            }
            Tokenizer t = Tokenizer.load(dir);
            for (JsonNode e : c.get("encodes")) {
                String text = e.get("text").asText();
                if (e.has("error")) {
                    IllegalArgumentException x = assertThrows(IllegalArgumentException.class, () -> t.encode(text, false), name + ": " + text);
                    assertTrue(x.getMessage().contains("not in the model vocabulary"), x.getMessage());
                } else {
                    int[] got = t.encode(text, false);
                    assertArrayEquals(ints(e.get("ids")), got, name + ": " + text + " gave " + Arrays.toString(got));
                }
            }
            for (JsonNode d : c.get("decodes")) assertEquals(d.get("text").asText(), t.decode(ints(d.get("ids")), false), name);
        }
        assertTrue(n >= 10, "cases: " + n);
    }

    @Test
    void splitPatternsWithOnigurumaClassesCutWhereTheLibraryCuts() throws Exception {
        JsonNode f = fixture();
        int n = 0;
        for (JsonNode s : f.get("splits")) {
            String pattern = s.get("pattern").asText();
            SplitBehavior behavior = SplitBehavior.valueOf(s.get("behavior").asText().toUpperCase(Locale.ROOT));
            List<String> want = new ArrayList<>();
            s.get("pieces").forEach(p -> want.add(p.asText()));
            assertEquals(want, pieces(TextPattern.regex(pattern), behavior, s.get("text").asText()), pattern + " " + behavior);
            n++;
        }
        assertEquals(20, n);
        List<String> ws = new ArrayList<>();
        f.get("whitespace").get("pieces").forEach(p -> ws.add(p.asText()));
        assertEquals(ws, pieces(TextPattern.rustRegex("\\w+|[^\\w\\s]+").inverted(), SplitBehavior.REMOVED, f.get("whitespace").get("text").asText()));
    }

    /** transformers 5.17 ignores clean_up_tokenization_spaces for BPE tokenizers (it warns): decode keeps " ," and " n't". */
    @Test
    void decodingKeepsTheSpacesTransformersKeeps(@TempDir Path tmp) throws Exception {
        JsonNode f = fixture();
        JsonNode first = f.get("cases").get(0).get("tokenizer").deepCopy();
        ((com.fasterxml.jackson.databind.node.ObjectNode) first).putArray("added_tokens");
        Files.writeString(tmp.resolve("tokenizer.json"), first.toString());
        Tokenizer t = Tokenizer.load(tmp);
        for (JsonNode c : f.get("cleanup")) {
            assertEquals(c.get("plain").asText(), c.get("clean").asText(), "transformers cleaned a BPE decode");
            assertEquals(c.get("clean").asText(), t.decode(ints(c.get("ids")), false));
        }
    }
}
