package dev.jsloth.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** decode(encode(x)) gives x back wherever the tokenizer is lossless. */
class TokenizerRoundTripTest {
    private static final Tokenizer BYTE_LEVEL = Fixtures.load(Fixtures.BYTE_LEVEL);
    private static final Tokenizer SPM = Fixtures.load(Fixtures.SPM);

    /** The texts of the reference cases plus those of the generated variants. */
    private static List<String> texts() throws IOException {
        List<String> texts = new ArrayList<>();
        for (Fixtures.Case c : Fixtures.cases(Fixtures.BYTE_LEVEL)) {
            texts.add(c.text());
        }
        for (Fixtures.Case c : Fixtures.cases(Fixtures.SPM)) {
            texts.add(c.text());
        }
        JsonNode variant = new ObjectMapper().readTree(
                Fixtures.variants().resolve("bl-llama3/cases.json").toFile());
        for (JsonNode c : variant) {
            texts.add(c.get("text").asText());
        }
        texts.add("x".repeat(10_000) + " " + "日本語".repeat(1000) + "\n\n\t 👩‍💻");
        return texts;
    }

    @Test
    void byteLevelIsLossless() throws IOException {
        List<String> texts = texts();
        assertTrue(texts.size() > 200);
        for (String text : texts) {
            assertEquals(text, BYTE_LEVEL.decode(BYTE_LEVEL.encode(text, false), false), text);
            // With BOS added, skipping special tokens gives the text back unless it spells one itself.
            if (!text.contains("<|begin_of_text|>") && !text.contains("<|end_of_text|>")) {
                assertEquals(text, BYTE_LEVEL.decode(BYTE_LEVEL.encode(text, true), true), text);
            }
            assertEquals("<|begin_of_text|>" + text, BYTE_LEVEL.decode(BYTE_LEVEL.encode(text, true), false), text);
        }
    }

    @Test
    void sentencePieceIsLosslessForTextsWithoutLeadingSpace() throws IOException {
        int checked = 0;
        for (String text : texts()) {
            // Lossy by design: a leading space is not kept (no "▁" is prepended to a text that already
            // starts with one, and the decoder strips one space), "▁" decodes as a space, and special
            // tokens typed in the text are skipped when decoding.
            if (text.startsWith(" ") || text.contains("\u2581") || text.contains("<s>") || text.contains("</s>")
                    || text.contains("<unk>")) {
                continue;
            }
            assertEquals(text, SPM.decode(SPM.encode(text, false), false), text);
            assertEquals(text, SPM.decode(SPM.encode(text, true), true), text);
            checked++;
        }
        assertTrue(checked > 150, "checked " + checked);
    }

    @Test
    void sentencePieceLeadingSpaceIsDropped() {
        assertEquals("leading space", SPM.decode(SPM.encode(" leading space", true), true));
    }

    @Test
    void unknownIdsAreSkippedWhenDecoding() {
        int[] ids = BYTE_LEVEL.encode("Hello", false);
        int[] withBad = new int[ids.length + 2];
        withBad[0] = -5;
        System.arraycopy(ids, 0, withBad, 1, ids.length);
        withBad[withBad.length - 1] = 1_000_000;
        assertEquals("Hello", BYTE_LEVEL.decode(withBad, false));
    }

    @Test
    void invalidByteSequencesDecodeToReplacementCharacters() {
        // "日" is three bytes; dropping its last token leaves an incomplete UTF-8 sequence.
        int[] ids = BYTE_LEVEL.encode("日x", false);
        int[] broken = new int[ids.length - 1];
        System.arraycopy(ids, 0, broken, 0, broken.length - 1);
        broken[broken.length - 1] = ids[ids.length - 1];
        assertEquals("\uFFFDx", BYTE_LEVEL.decode(broken, false));
        // Byte fallback tokens that are not valid UTF-8 give one U+FFFD per byte.
        int b = SPM.tokenToId("<0xE6>").orElseThrow();
        int x = SPM.tokenToId("x").orElseThrow();
        assertEquals("\uFFFDx", SPM.decode(new int[] {b, x}, false));
    }

    @Test
    void unpairedSurrogatesAreEncodedAsReplacementCharacters() {
        assertEquals("a\uFFFDb", BYTE_LEVEL.decode(BYTE_LEVEL.encode("a\uD800b", false), false));
        assertEquals(BYTE_LEVEL.encode("a\uFFFDb", false).length, BYTE_LEVEL.encode("a\uDC00b", false).length);
    }
}
