package dev.jsloth.tokenizer;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The building blocks: regex translation, pattern splitting, BPE merging, decoders. */
class TokenizerComponentsTest {
    private static final String LLAMA3 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
            + "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

    private static List<String> pieces(TextPattern pattern, SplitBehavior behavior, String text) {
        List<String> out = new ArrayList<>();
        for (NormalizedString ns : NormalizedString.of(text).split(pattern, behavior)) {
            if (!ns.isEmpty()) {
                out.add(ns.get());
            }
        }
        return out;
    }

    @Test
    void llama3RegexSplitsLikeTokenizers() {
        TextPattern p = TextPattern.regex(LLAMA3);
        assertEquals(List.of("Hello", " ", " world"), pieces(p, SplitBehavior.ISOLATED, "Hello  world"));
        assertEquals(List.of("don", "'t", " WE", "'LL"), pieces(p, SplitBehavior.ISOLATED, "don't WE'LL"));
        assertEquals(List.of("123", "456", "7"), pieces(p, SplitBehavior.ISOLATED, "1234567"));
        // NBSP is white space (Unicode \s); a zero-width space is not, so it starts a word.
        assertEquals(List.of("a", "\u00a0", "\u00a0b"), pieces(p, SplitBehavior.ISOLATED, "a\u00a0\u00a0b"));
        assertEquals(List.of("x", "\u200bzero"), pieces(p, SplitBehavior.ISOLATED, "x\u200bzero"));
        assertEquals(List.of("a", ":\n\n", "\t", " b"), pieces(p, SplitBehavior.ISOLATED, "a:\n\n\t b"));
        assertEquals(List.of(" 🦥", " 👩\u200d💻"), pieces(p, SplitBehavior.ISOLATED, " 🦥 👩\u200d💻"));
        // Unicode case folding: the long s matches 's.
        assertEquals(List.of("it", "'\u017f"), pieces(p, SplitBehavior.ISOLATED, "it'\u017f"));
    }

    @Test
    void onigurumaSyntaxIsTranslated() {
        assertTrue(OnigRegex.compile("^\\h+$").matcher("0aF9").matches());
        assertFalse(OnigRegex.compile("\\h").matcher("g").matches());
        assertTrue(OnigRegex.compile("a{,2}").matcher("aa").matches());
        assertTrue(OnigRegex.compile("x{y}").matcher("x{y}").matches());
        assertTrue(OnigRegex.compile("\\p{Han}+").matcher("日本語").matches());
        assertTrue(OnigRegex.compile("\\p{^L}").matcher("1").matches());
        assertTrue(OnigRegex.compile("\\P{^L}").matcher("a").matches());
        assertTrue(OnigRegex.compile("[[:alpha:][:digit:]]+").matcher("é1").matches());
        assertTrue(OnigRegex.compile("[[:^alpha:]]").matcher("1").matches());
        assertTrue(OnigRegex.compile("(?m:a.b)").matcher("a\nb").matches());
        assertFalse(OnigRegex.compile("a.b").matcher("a\nb").matches());
        assertTrue(OnigRegex.compile("a(?#comment)b").matcher("ab").matches());
        assertTrue(OnigRegex.compile("[]a]+").matcher("]a").matches());
        assertTrue(OnigRegex.compile("\\v").matcher("\u000b").matches());
        assertEquals("\\p{L}", OnigRegex.translate("\\p{L}"));
        assertTrue(OnigRegex.compile("\\p{Letter}").matcher("ж").matches());
    }

    @Test
    void emptyMatchesRightAfterAMatchAreSkipped() {
        List<TextPattern.Span> spans = TextPattern.regex("\\s*").findMatches(" a");
        assertEquals(List.of(new TextPattern.Span(0, 1, true), new TextPattern.Span(1, 2, false),
                new TextPattern.Span(2, 2, true)), spans);
    }

    @Test
    void splitBehaviors() {
        TextPattern dash = TextPattern.literal("-");
        String text = "a-b--c-";
        assertEquals(List.of("a", "-", "b", "-", "-", "c", "-"), pieces(dash, SplitBehavior.ISOLATED, text));
        assertEquals(List.of("a", "b", "c"), pieces(dash, SplitBehavior.REMOVED, text));
        assertEquals(List.of("a-", "b-", "-", "c-"), pieces(dash, SplitBehavior.MERGED_WITH_PREVIOUS, text));
        assertEquals(List.of("a", "-b", "-", "-c", "-"), pieces(dash, SplitBehavior.MERGED_WITH_NEXT, text));
        assertEquals(List.of("a", "-", "b", "--", "c", "-"), pieces(dash, SplitBehavior.CONTIGUOUS, text));
        assertEquals(List.of("-", "-", "-", "-"), pieces(dash.inverted(), SplitBehavior.REMOVED, text));
    }

    @Test
    void piecesRememberWhereTheyStartedInTheOriginal() {
        NormalizedString ns = NormalizedString.of("ab cd");
        ns.replace(TextPattern.literal(" "), "\u2581\u2581");
        assertEquals("ab\u2581\u2581cd", ns.get());
        List<NormalizedString> parts = ns.split(TextPattern.literal("c"), SplitBehavior.ISOLATED);
        assertEquals(0, parts.get(0).originalStart());
        assertEquals(3, parts.get(1).originalStart());
        NormalizedString stripped = NormalizedString.of("  x");
        stripped.strip(true, true);
        assertEquals(2, stripped.slice(0, 1).originalStart());
        NormalizedString prepended = NormalizedString.of("x").prepend("\u2581");
        assertEquals(0, prepended.slice(1, 2).originalStart());
        assertEquals("", NormalizedString.of("").prepend("\u2581").get());
    }

    @Test
    void decoders() {
        Decoders.Decoder strip = new Decoders.Strip(' ', 1, 1);
        assertEquals(List.of(" a ", "b", ""), strip.decodeChain(List.of("  a  ", " b", " ")));
        Decoders.Decoder fallback = new Decoders.ByteFallback();
        assertEquals(List.of("a", "é", "b", "\uFFFD", "\uFFFD"),
                fallback.decodeChain(List.of("a", "<0xC3>", "<0xA9>", "b", "<0xE6>", "<0x97>")));
        assertEquals(List.of("<0xZZ>"), fallback.decodeChain(List.of("<0xZZ>")));
        Metaspace always = new Metaspace('\u2581', Metaspace.Prepend.ALWAYS, true);
        assertEquals(List.of("Hey", " friend!"), always.decode(List.of("\u2581Hey", "\u2581friend!")));
        Metaspace never = new Metaspace('\u2581', Metaspace.Prepend.NEVER, true);
        assertEquals(List.of(" Hey", " friend!"), never.decode(List.of("\u2581Hey", "\u2581friend!")));
        assertEquals(List.of("héllo wörld"), ByteLevel.decode(List.of("h\u00c3\u00a9llo", "\u0120w\u00c3\u00b6rld")));
    }

    @Test
    void byteLevelAlphabet() {
        assertEquals('\u0120', ByteLevel.byteChar(' '));
        assertEquals('\u010a', ByteLevel.byteChar('\n'));
        assertEquals('!', ByteLevel.byteChar('!'));
        for (int b = 0; b < 256; b++) {
            assertEquals(b, ByteLevel.charByte(ByteLevel.byteChar(b)));
        }
        assertEquals("\u00e6\u0139\u00a5", ByteLevel.encodeCodePoint('日'));
    }

    // ------------------------------------------------------------------ BPE

    /** A BPE model and the rank of each merge pair ("left right"), as the model sees them. */
    private record RandomBpe(Bpe bpe, Map<String, Integer> ranks) {}

    /** A random BPE over a small alphabet: every merge joins two existing tokens. */
    private static RandomBpe randomBpe(Random random, String alphabet, int merges, boolean stringMerges)
            throws Exception {
        Map<String, Integer> vocab = new LinkedHashMap<>();
        List<String> tokens = new ArrayList<>();
        for (char c : alphabet.toCharArray()) {
            vocab.put(String.valueOf(c), vocab.size());
            tokens.add(String.valueOf(c));
        }
        Map<String, Integer> ranks = new HashMap<>();
        ObjectMapper mapper = new ObjectMapper();
        ObjectNode model = mapper.createObjectNode();
        model.put("type", "BPE");
        ObjectNode vocabJson = model.putObject("vocab");
        ArrayNode mergeList = model.putArray("merges");
        while (mergeList.size() < merges) {
            String a = tokens.get(random.nextInt(tokens.size()));
            String b = tokens.get(random.nextInt(Math.min(tokens.size(), alphabet.length() * 3)));
            if (a.length() + b.length() > 8) {
                continue;
            }
            if (!vocab.containsKey(a + b)) {
                vocab.put(a + b, vocab.size());
                tokens.add(a + b);
            }
            // A pair listed twice keeps its last rank, as in tokenizers' merge map.
            ranks.put(a + " " + b, mergeList.size());
            if (stringMerges) {
                mergeList.add(a + " " + b);
            } else {
                mergeList.addArray().add(a).add(b);
            }
        }
        vocab.forEach(vocabJson::put);
        return new RandomBpe(Bpe.parse(Json.root("test.json", model)), ranks);
    }

    /** Textbook BPE: repeatedly merge the adjacent pair with the lowest rank, leftmost first. */
    private static List<String> naiveBpe(String word, Map<String, Integer> ranks) {
        List<String> symbols = new ArrayList<>();
        word.codePoints().forEach(cp -> symbols.add(Character.toString(cp)));
        while (true) {
            int best = -1;
            int bestRank = Integer.MAX_VALUE;
            for (int i = 0; i + 1 < symbols.size(); i++) {
                Integer r = ranks.get(symbols.get(i) + " " + symbols.get(i + 1));
                if (r != null && r < bestRank) {
                    bestRank = r;
                    best = i;
                }
            }
            if (best < 0) {
                return symbols;
            }
            symbols.set(best, symbols.get(best) + symbols.remove(best + 1));
        }
    }

    @Test
    void bpeMergesMatchTheTextbookAlgorithm() throws Exception {
        Random random = new Random(42);
        String alphabet = "abcde";
        for (int round = 0; round < 6; round++) {
            RandomBpe model = randomBpe(random, alphabet, 200, round % 2 == 0);
            for (int i = 0; i < 300; i++) {
                StringBuilder word = new StringBuilder();
                int len = 1 + random.nextInt(i < 250 ? 12 : 300);
                for (int k = 0; k < len; k++) {
                    word.append(alphabet.charAt(random.nextInt(alphabet.length())));
                }
                List<String> expected = naiveBpe(word.toString(), model.ranks());
                List<String> actual = new ArrayList<>();
                for (int id : model.bpe().tokenize(word.toString())) {
                    actual.add(model.bpe().idToToken(id));
                }
                assertEquals(expected, actual, word.toString());
            }
        }
    }

    @Test
    void longWordsAreMergedInLinearithmicTime() throws Exception {
        Tokenizer tokenizer = Fixtures.load(Fixtures.BYTE_LEVEL);
        String word = "thequickbrownfoxjumpsoverthelazydog".repeat(10_000);
        int[] ids = assertTimeoutPreemptively(Duration.ofSeconds(20), () -> tokenizer.encode(word, false));
        assertEquals(word, tokenizer.decode(ids, false));
        String spmWord = "日本語のテキスト".repeat(20_000);
        Tokenizer spm = Fixtures.load(Fixtures.SPM);
        int[] spmIds = assertTimeoutPreemptively(Duration.ofSeconds(20), () -> spm.encode(spmWord, false));
        assertEquals(spmWord, spm.decode(spmIds, false));
    }

    @Test
    void byteFallbackAndUnknownTokens() throws Exception {
        Tokenizer spm = Fixtures.load(Fixtures.SPM);
        // "☃" is not in the vocabulary: its three UTF-8 bytes become <0xE2> <0x98> <0x83>.
        int[] ids = spm.encode("☃", false);
        assertEquals(List.of("\u2581", "<0xE2>", "<0x98>", "<0x83>"),
                java.util.Arrays.stream(ids).mapToObj(spm::idToToken).toList());
        assertArrayEquals(ids, spm.encode("☃", false), "cached result is stable");
    }
}
