package dev.jsloth.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link Tokenizer#prefixes}: for every cut, the agreement it gives is the common prefix of the cut text's own encoding
 * with the whole text's, on every fixture tokenizer (byte-level and SentencePiece-style, normalized and stripping added
 * tokens among the variants), on random texts full of added tokens, whole or cut.
 */
class TokenizerPrefixesTest {
    private static final String[] PIECES = {"Hello", " world", "  ", "\n", "\n\n", "\t", " the", "sloth", "ß", "naïve", " café",
            "日本語", "🦥", "👩‍💻", "123", " 4567", "'s", "don't", "x", " ", "A", "\u00a0", "\u200b", "e\u0301", "!?", "##", "▁"};

    static Stream<Path> tokenizerDirs() throws IOException {
        List<Path> dirs = new ArrayList<>(List.of(Fixtures.dir(Fixtures.BYTE_LEVEL), Fixtures.dir(Fixtures.SPM)));
        try (Stream<Path> s = Files.list(Fixtures.variants())) {
            s.filter(d -> Files.exists(d.resolve("tokenizer.json"))).sorted().forEach(dirs::add);
        }
        return dirs.stream();
    }

    @Test
    void agreementIsThePrefixEncodingsCommonPrefix() throws IOException {
        int dirs = 0;
        long fastCuts = 0;
        for (Path dir : (Iterable<Path>) tokenizerDirs()::iterator) {
            Tokenizer tok = Tokenizer.load(dir);
            List<String> added = new ArrayList<>();
            for (JsonNode t : new ObjectMapper().readTree(dir.resolve("tokenizer.json").toFile()).get("added_tokens")) added.add(t.get("content").asText());
            Random r = new Random(dir.getFileName().toString().hashCode());
            for (int c = 0; c < 40; c++) {
                StringBuilder sb = new StringBuilder();
                int n = 1 + r.nextInt(30);
                for (int i = 0; i < n; i++) {
                    int kind = r.nextInt(10);
                    if (kind < 3 && !added.isEmpty()) {
                        String t = added.get(r.nextInt(added.size()));
                        sb.append(kind == 0 && t.length() > 1 ? t.substring(0, 1 + r.nextInt(t.length() - 1)) : t); // sometimes cut short
                    } else {
                        sb.append(PIECES[r.nextInt(PIECES.length)]);
                    }
                }
                String text = sb.toString();
                Tokenizer.Prefixes p = tok.prefixes(text);
                int[] ids = tok.encode(text, false);
                assertArrayEquals(ids, p.ids(), dir + ": " + text);
                for (int end = 0; end <= text.length(); end++) {
                    int[] cut = tok.encode(text.substring(0, end), false);
                    int expected = 0;
                    while (expected < Math.min(cut.length, ids.length) && cut[expected] == ids[expected]) expected++;
                    assertEquals(expected, p.agreement(end), dir.getFileName() + ": cut " + end + " of " + text);
                    if (endsAfterAddedToken(text, end, added)) fastCuts++;
                }
            }
            dirs++;
        }
        assertTrue(dirs >= 10, "fixture tokenizers found: " + dirs);
        assertTrue(fastCuts > 1000, "cuts after an added token: " + fastCuts);
    }

    private static boolean endsAfterAddedToken(String text, int end, List<String> added) {
        for (String t : added) if (!t.isEmpty() && text.lastIndexOf(t, end - t.length()) >= 0) return true;
        return false;
    }
}
