package dev.jsloth.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** Access to the reference tokenizer fixtures ({@link dev.jsloth.GoldenFixtures}: the shared ones, or their bundled copy). */
final class Fixtures {
    static final String BYTE_LEVEL = "tok-bytelevel";
    static final String SPM = "tok-spm";

    /** One reference case: the text and the ids tokenizers produced without and with special tokens. */
    record Case(String fixture, int index, String text, int[] ids, int[] idsSpecial) {
        @Override
        public String toString() {
            return fixture + "#" + index + " " + text.replace("\n", "\\n").replace("\t", "\\t");
        }
    }

    private Fixtures() {}

    static Path dir(String fixture) {
        return dev.jsloth.GoldenFixtures.tokenizer(fixture);
    }

    /**
     * The fixture's vocabulary size read straight from its tokenizer.json (one past the largest id of the model's
     * vocabulary and the added tokens), independently of {@link Tokenizer}: the fixtures' trainers pick the size from
     * their seed, so tests derive it rather than state it.
     */
    static int vocabularySize(String fixture) {
        try {
            JsonNode root = new ObjectMapper().readTree(dir(fixture).resolve("tokenizer.json").toFile());
            int max = -1;
            for (JsonNode id : root.get("model").get("vocab")) max = Math.max(max, id.asInt());
            for (JsonNode t : root.get("added_tokens")) max = Math.max(max, t.get("id").asInt());
            return max + 1;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** The bundled tokenizer.json variants (each directory self-contained: its tokenizer.json and cases.json). */
    static Path variants() {
        try {
            return Path.of(Fixtures.class.getResource("/fixtures/tok-variants").toURI());
        } catch (java.net.URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    static Tokenizer load(String fixture) {
        try {
            return Tokenizer.load(dir(fixture));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static List<Case> cases(String fixture) {
        try {
            JsonNode root = new ObjectMapper().readTree(dir(fixture).resolve("cases.json").toFile());
            List<Case> out = new ArrayList<>();
            for (int i = 0; i < root.size(); i++) {
                JsonNode c = root.get(i);
                out.add(new Case(fixture, i, c.get("text").asText(), ints(c.get("ids")), ints(c.get("ids_special"))));
            }
            return out;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static int[] ints(JsonNode array) {
        int[] out = new int[array.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = array.get(i).asInt();
        }
        return out;
    }
}
