package dev.jsloth.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/** Broken or unsupported files are reported as TokenizerFormatException naming the file and field. */
class TokenizerMalformedTest {
    private static final ObjectMapper MAPPER = new ObjectMapper();

    @TempDir
    Path tmp;

    private static ObjectNode fixture(String name) throws IOException {
        return (ObjectNode) MAPPER.readTree(Fixtures.dir(name).resolve("tokenizer.json").toFile());
    }

    private Path write(String content) throws IOException {
        Path file = tmp.resolve("tokenizer.json");
        Files.writeString(file, content, StandardCharsets.UTF_8);
        return file;
    }

    /** Loads the byte-level fixture changed by {@code edit}, expecting a failure; returns the message. */
    private String failure(String fixture, Consumer<ObjectNode> edit) throws IOException {
        ObjectNode root = fixture(fixture);
        edit.accept(root);
        Path file = write(MAPPER.writeValueAsString(root));
        TokenizerFormatException e = assertThrows(TokenizerFormatException.class, () -> Tokenizer.load(file));
        assertTrue(e.getMessage().startsWith(file + ": "), e.getMessage());
        return e.getMessage();
    }

    private static void assertMentions(String message, String... parts) {
        for (String part : parts) {
            assertTrue(message.contains(part), () -> "'" + message + "' should mention '" + part + "'");
        }
    }

    @Test
    void truncatedJson() throws IOException {
        String json = Files.readString(Fixtures.dir(Fixtures.BYTE_LEVEL).resolve("tokenizer.json"));
        int cut = json.indexOf("\"merges\"") + 200;
        Path file = write(json.substring(0, cut));
        TokenizerFormatException e = assertThrows(TokenizerFormatException.class, () -> Tokenizer.load(file));
        assertMentions(e.getMessage(), "tokenizer.json", "model.merges", "malformed JSON");
    }

    @Test
    void notJsonAtAll() throws IOException {
        Path file = write("this is not json");
        TokenizerFormatException e = assertThrows(TokenizerFormatException.class, () -> Tokenizer.load(file));
        assertMentions(e.getMessage(), "tokenizer.json", "malformed JSON");
        Path empty = write("");
        e = assertThrows(TokenizerFormatException.class, () -> Tokenizer.load(empty));
        assertMentions(e.getMessage(), "tokenizer.json", "empty");
        Path array = write("[1, 2]");
        e = assertThrows(TokenizerFormatException.class, () -> Tokenizer.load(array));
        assertMentions(e.getMessage(), "<root>", "expected an object");
        Path trailing = write("{} {}");
        assertThrows(TokenizerFormatException.class, () -> Tokenizer.load(trailing));
    }

    @Test
    void mergesOfTheWrongType() throws IOException {
        assertMentions(failure(Fixtures.BYTE_LEVEL, r -> ((ObjectNode) r.get("model")).put("merges", "a b")),
                "model.merges", "expected an array");
        assertMentions(failure(Fixtures.BYTE_LEVEL, r -> ((ArrayNode) r.get("model").get("merges")).set(12,
                JsonNodeFactory.instance.numberNode(7))), "model.merges[12]", "merge");
        assertMentions(failure(Fixtures.BYTE_LEVEL, r -> ((ArrayNode) r.get("model").get("merges")).set(3,
                JsonNodeFactory.instance.textNode("abc"))), "model.merges[3]", "exactly one space");
        assertMentions(failure(Fixtures.BYTE_LEVEL, r -> ((ArrayNode) r.get("model").get("merges").get(5)).add("x")),
                "model.merges[5]", "pair");
        assertMentions(failure(Fixtures.BYTE_LEVEL, r -> ((ArrayNode) r.get("model").get("merges").get(5)).set(1,
                JsonNodeFactory.instance.numberNode(1))), "model.merges[5][1]", "expected a string");
    }

    @Test
    void mergeTokensMustBeInTheVocabulary() throws IOException {
        assertMentions(failure(Fixtures.BYTE_LEVEL, r -> ((ArrayNode) r.get("model").get("merges")).set(2,
                MAPPER.createArrayNode().add("zzz").add("q"))), "model.merges[2]", "'zzz'", "not in the vocabulary");
        assertMentions(failure(Fixtures.SPM, r -> ((ArrayNode) r.get("model").get("merges")).insert(0,
                MAPPER.createArrayNode().add("<0x00>").add("<0x01>"))), "model.merges[0]", "<0x00><0x01>");
    }

    @Test
    void unknownModelType() throws IOException {
        assertMentions(failure(Fixtures.BYTE_LEVEL, r -> ((ObjectNode) r.get("model")).put("type", "WordPiece")),
                "model.type", "unsupported model type \"WordPiece\"");
        assertMentions(failure(Fixtures.BYTE_LEVEL, r -> ((ObjectNode) r.get("model")).put("type", "Unigram")),
                "model.type", "Unigram");
        assertMentions(failure(Fixtures.BYTE_LEVEL, r -> r.remove("model")), "model", "missing");
    }

    @Test
    void unknownComponents() throws IOException {
        assertMentions(failure(Fixtures.BYTE_LEVEL, r -> ((ObjectNode) r.get("pre_tokenizer").get("pretokenizers").get(1))
                .put("type", "UnicodeScripts")), "pre_tokenizer.pretokenizers[1].type", "UnicodeScripts");
        assertMentions(failure(Fixtures.SPM, r -> r.putObject("normalizer").put("type", "Precompiled")),
                "normalizer.type", "Precompiled");
        assertMentions(failure(Fixtures.SPM, r -> ((ObjectNode) r.get("decoder").get("decoders").get(3)).put("type", "CTC")),
                "decoder.decoders[3].type", "CTC");
        assertMentions(failure(Fixtures.SPM, r -> ((ObjectNode) r.get("post_processor")).put("type", "Mystery")),
                "post_processor.type", "Mystery");
        assertMentions(failure(Fixtures.SPM, r -> ((ObjectNode) r.get("pre_tokenizer")).put("prepend_scheme", "sometimes")),
                "pre_tokenizer.prepend_scheme", "sometimes");
    }

    @Test
    void wrongFieldTypes() throws IOException {
        assertMentions(failure(Fixtures.BYTE_LEVEL, r -> ((ObjectNode) r.get("model").get("vocab")).put("hello", "x")),
                "model.vocab.hello", "integer");
        assertMentions(failure(Fixtures.BYTE_LEVEL, r -> ((ObjectNode) r.get("model").get("vocab")).put("a b", -3)),
                "model.vocab[\"a b\"]", "non-negative");
        assertMentions(failure(Fixtures.BYTE_LEVEL, r -> ((ObjectNode) r.get("model")).put("byte_fallback", "yes")),
                "model.byte_fallback", "boolean");
        assertMentions(failure(Fixtures.BYTE_LEVEL, r -> ((ObjectNode) r.get("added_tokens").get(1)).remove("content")),
                "added_tokens[1].content", "missing");
        assertMentions(failure(Fixtures.BYTE_LEVEL, r -> ((ObjectNode) r.get("added_tokens").get(0)).put("id", 1.5)),
                "added_tokens[0].id", "integer");
        assertMentions(failure(Fixtures.SPM, r -> ((ObjectNode) r.get("pre_tokenizer")).put("replacement", "ab")),
                "pre_tokenizer.replacement", "single character");
        assertMentions(failure(Fixtures.SPM, r -> ((ObjectNode) r.get("post_processor").get("special_tokens").get("<s>"))
                .put("ids", 1)), "post_processor.special_tokens[\"<s>\"].ids", "array");
        assertMentions(failure(Fixtures.SPM, r -> ((ObjectNode) r.get("post_processor")).remove("special_tokens")),
                "post_processor.single[0].SpecialToken.id", "missing from special_tokens");
    }

    @Test
    void invalidRegex() throws IOException {
        assertMentions(failure(Fixtures.BYTE_LEVEL, r -> ((ObjectNode) r.get("pre_tokenizer").get("pretokenizers").get(0)
                .get("pattern")).put("Regex", "(unclosed")), "pre_tokenizer.pretokenizers[0].pattern.Regex",
                "regular expression");
        assertMentions(failure(Fixtures.BYTE_LEVEL, r -> ((ObjectNode) r.get("pre_tokenizer").get("pretokenizers").get(0)
                .get("pattern")).put("Regex", "\\p{NoSuchProperty}")), "pre_tokenizer.pretokenizers[0].pattern.Regex");
    }

    @Test
    void missingFileIsAnIoError() {
        assertThrows(NoSuchFileException.class, () -> Tokenizer.load(tmp.resolve("absent")));
        assertThrows(NoSuchFileException.class, () -> Tokenizer.load(tmp));
    }

    /**
     * Every field of both fixtures replaced by values of every other type: loading either works or
     * fails with a TokenizerFormatException, and a loaded tokenizer encodes and decodes without
     * throwing.
     */
    @Test
    void anyFieldOfAnyTypeNeverEscapesAsUncheckedException() throws IOException {
        JsonNode[] replacements = {
            JsonNodeFactory.instance.nullNode(), JsonNodeFactory.instance.numberNode(-1),
            JsonNodeFactory.instance.numberNode(3), JsonNodeFactory.instance.textNode("x"),
            JsonNodeFactory.instance.textNode(""), JsonNodeFactory.instance.booleanNode(true),
            MAPPER.createArrayNode(), MAPPER.createObjectNode(),
        };
        int loaded = 0;
        int rejected = 0;
        for (String fixture : new String[] {Fixtures.BYTE_LEVEL, Fixtures.SPM}) {
            List<List<Object>> paths = new ArrayList<>();
            collectPaths(fixture(fixture), new ArrayList<>(), paths);
            for (List<Object> path : paths) {
                for (JsonNode replacement : replacements) {
                    ObjectNode root = fixture(fixture);
                    replace(root, path, replacement.deepCopy());
                    Path file = write(MAPPER.writeValueAsString(root));
                    try {
                        Tokenizer t = Tokenizer.load(file);
                        loaded++;
                        for (String text : new String[] {"", "Hello world", " <s>x</s> 日本 🦥\n", "<|begin_of_text|>a"}) {
                            t.decode(t.encode(text, true), true);
                            t.decode(t.encode(text, false), false);
                        }
                    } catch (TokenizerFormatException e) {
                        rejected++;
                        assertTrue(e.getMessage().startsWith(file + ": "), e.getMessage());
                        // The catch-all for internal errors must never be what reports a bad field.
                        assertTrue(!e.getMessage().contains("cannot be loaded"), path + ": " + e.getMessage());
                    } catch (RuntimeException e) {
                        fail("path " + path + " := " + replacement + " threw " + e, e);
                    }
                }
            }
        }
        assertTrue(loaded > 100 && rejected > 100, loaded + " loaded, " + rejected + " rejected");
    }

    /** Paths to every node, except that only a few elements of the vocabulary and merges are taken. */
    private static void collectPaths(JsonNode node, List<Object> prefix, List<List<Object>> out) {
        if (!prefix.isEmpty()) {
            out.add(List.copyOf(prefix));
        }
        if (node.isObject()) {
            int i = 0;
            for (Iterator<Map.Entry<String, JsonNode>> it = node.properties().iterator(); it.hasNext(); i++) {
                Map.Entry<String, JsonNode> e = it.next();
                if (prefix.size() == 2 && prefix.get(1).equals("vocab") && i % 250 != 3) {
                    continue;
                }
                prefix.add(e.getKey());
                collectPaths(e.getValue(), prefix, out);
                prefix.removeLast();
            }
        } else if (node.isArray()) {
            for (int i = 0; i < node.size(); i++) {
                if (prefix.size() == 2 && prefix.get(1).equals("merges") && i % 250 != 5) {
                    continue;
                }
                prefix.add(i);
                collectPaths(node.get(i), prefix, out);
                prefix.removeLast();
            }
        }
    }

    private static void replace(JsonNode root, List<Object> path, JsonNode value) {
        JsonNode parent = root;
        for (int i = 0; i < path.size() - 1; i++) {
            Object step = path.get(i);
            parent = step instanceof Integer index ? parent.get(index) : parent.get((String) step);
        }
        Object last = path.getLast();
        if (last instanceof Integer index) {
            ((ArrayNode) parent).set(index, value);
        } else {
            ((ObjectNode) parent).set((String) last, value);
        }
    }

    @Test
    void messageFormat() throws IOException {
        String message = failure(Fixtures.BYTE_LEVEL, r -> ((ArrayNode) r.get("model").get("merges")).set(12,
                JsonNodeFactory.instance.booleanNode(false)));
        assertEquals(tmp.resolve("tokenizer.json") + ": model.merges[12]: expected a merge as a string \"left right\""
                + " or a pair [left, right], found the boolean false", message);
    }
}
