package dev.jsloth.tokenizer;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.OptionalInt;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Added and special tokens: splitting the input on them, their flags, and the vocabulary API. */
class TokenizerAddedTokensTest {
    private static final Tokenizer BYTE_LEVEL = Fixtures.load(Fixtures.BYTE_LEVEL);
    private static final Tokenizer SPM = Fixtures.load(Fixtures.SPM);
    /** The byte-level fixture's vocabulary size: the id the first token added by {@link #withAddedTokens} gets. */
    private static final int SIZE = Fixtures.vocabularySize(Fixtures.BYTE_LEVEL);

    @TempDir
    Path tmp;

    private static int[] concat(int[]... parts) {
        return java.util.Arrays.stream(parts).flatMapToInt(IntStream::of).toArray();
    }

    @Test
    void specialTokenInTextIsOneId() {
        int bos = BYTE_LEVEL.tokenToId("<|begin_of_text|>").orElseThrow();
        assertEquals(0, bos);
        assertArrayEquals(concat(new int[] {bos}, BYTE_LEVEL.encode("hello", false)),
                BYTE_LEVEL.encode("<|begin_of_text|>hello", false));
        int eot = BYTE_LEVEL.tokenToId("<|end_of_text|>").orElseThrow();
        assertArrayEquals(concat(BYTE_LEVEL.encode("a b", false), new int[] {eot}, BYTE_LEVEL.encode(" c", false)),
                BYTE_LEVEL.encode("a b<|end_of_text|> c", false));
        // The post-processor adds BOS in front of everything, a BOS in the text included.
        assertArrayEquals(concat(new int[] {bos, bos}, BYTE_LEVEL.encode("hi", false)),
                BYTE_LEVEL.encode("<|begin_of_text|>hi", true));
    }

    @Test
    void specialTokenSplitsSentencePieceInput() {
        int bos = SPM.tokenToId("<s>").orElseThrow();
        int eos = SPM.tokenToId("</s>").orElseThrow();
        int[] actual = SPM.encode("<s>hello</s>", false);
        assertEquals(bos, actual[0]);
        assertEquals(eos, actual[actual.length - 1]);
        // With prepend_scheme "first", only the piece starting the input gets a "\u2581".
        StringBuilder middle = new StringBuilder();
        for (int i = 1; i < actual.length - 1; i++) {
            middle.append(SPM.idToToken(actual[i]));
        }
        assertEquals("hello", middle.toString());
        StringBuilder alone = new StringBuilder();
        for (int id : SPM.encode("hello", false)) {
            alone.append(SPM.idToToken(id));
        }
        assertEquals("\u2581hello", alone.toString());
        assertEquals("<s>hello</s>", SPM.decode(actual, false));
        assertEquals("hello", SPM.decode(actual, true));
    }

    @Test
    void vocabularyApi() {
        assertEquals(SIZE, BYTE_LEVEL.vocabSize());
        assertTrue(BYTE_LEVEL.isSpecial(0));
        assertTrue(BYTE_LEVEL.isSpecial(1));
        assertFalse(BYTE_LEVEL.isSpecial(2));
        assertFalse(BYTE_LEVEL.isSpecial(-1));
        assertEquals("<|end_of_text|>", BYTE_LEVEL.idToToken(1));
        assertEquals("!", BYTE_LEVEL.idToToken(2));
        assertNull(BYTE_LEVEL.idToToken(SIZE));
        assertNull(BYTE_LEVEL.idToToken(-1));
        assertEquals(OptionalInt.empty(), BYTE_LEVEL.tokenToId("no such token"));
        assertEquals(OptionalInt.of(222), BYTE_LEVEL.tokenToId("\u0120"));
        assertEquals("<unk>", SPM.idToToken(0));
        assertTrue(SPM.isSpecial(0) && SPM.isSpecial(1) && SPM.isSpecial(2));
        assertEquals(OptionalInt.of(3), SPM.tokenToId("<0x00>"));
    }

    /** A copy of the byte-level fixture with extra added tokens. */
    private Tokenizer withAddedTokens(String... specs) throws IOException {
        ObjectMapper mapper = new ObjectMapper();
        ObjectNode root = (ObjectNode) mapper.readTree(Fixtures.dir(Fixtures.BYTE_LEVEL).resolve("tokenizer.json").toFile());
        ArrayNode added = (ArrayNode) root.get("added_tokens");
        int id = SIZE;
        for (String spec : specs) {
            String[] parts = spec.split(" ");
            ObjectNode t = added.addObject();
            t.put("id", id++);
            t.put("content", parts[0]);
            t.put("single_word", spec.contains("single_word"));
            t.put("lstrip", spec.contains("lstrip"));
            t.put("rstrip", spec.contains("rstrip"));
            t.put("normalized", spec.contains("normalized"));
            t.put("special", spec.contains("special"));
        }
        Path file = tmp.resolve("tokenizer-" + System.nanoTime() + ".json");
        Files.writeString(file, mapper.writeValueAsString(root));
        return Tokenizer.load(file);
    }

    @Test
    void longestMatchWins() throws IOException {
        Tokenizer t = withAddedTokens("<a> special", "<a><b> special");
        assertArrayEquals(new int[] {SIZE + 1}, t.encode("<a><b>", false));
        assertArrayEquals(concat(new int[] {SIZE}, t.encode("<b", false)), t.encode("<a><b", false));
        assertEquals(SIZE + 2, t.vocabSize());
    }

    @Test
    void lstripAndRstripSwallowWhiteSpace() throws IOException {
        Tokenizer t = withAddedTokens("<L> lstrip special", "<R> rstrip special", "<B> lstrip rstrip");
        assertArrayEquals(concat(t.encode("x", false), new int[] {SIZE}, t.encode(" y", false)),
                t.encode("x  \t<L> y", false));
        assertArrayEquals(concat(t.encode("x ", false), new int[] {SIZE + 1}, t.encode("y", false)),
                t.encode("x <R> \n y", false));
        assertArrayEquals(concat(t.encode("x", false), new int[] {SIZE + 2}, t.encode("y", false)),
                t.encode("x\u00a0<B>\u3000y", false));
    }

    @Test
    void singleWordOnlyMatchesWholeWords() throws IOException {
        Tokenizer t = withAddedTokens("tok single_word");
        assertArrayEquals(concat(t.encode("a ", false), new int[] {SIZE}, t.encode(" b", false)),
                t.encode("a tok b", false));
        assertArrayEquals(concat(t.encode("(", false), new int[] {SIZE}, t.encode(")", false)), t.encode("(tok)", false));
        int[] inWord = t.encode("atok tokb", false);
        for (int id : inWord) {
            assertTrue(id < SIZE, "no added token inside words");
        }
    }

    @Test
    void decodeSkipsOnlySpecialTokens() throws IOException {
        Tokenizer t = withAddedTokens("<sp> special", "<plain>");
        int[] ids = t.encode("a<sp>b<plain>c", false);
        assertEquals("a<sp>b<plain>c", t.decode(ids, false));
        assertEquals("ab<plain>c", t.decode(ids, true));
        assertTrue(t.isSpecial(SIZE));
        assertFalse(t.isSpecial(SIZE + 1));
    }

    @Test
    void tokenAlreadyInVocabularyKeepsItsId() throws IOException {
        // "Ġ" is id 222 in the model; declaring it as an added token with another id keeps 222.
        Tokenizer t = withAddedTokens("\u0120");
        assertEquals(OptionalInt.of(222), t.tokenToId("\u0120"));
    }
}
