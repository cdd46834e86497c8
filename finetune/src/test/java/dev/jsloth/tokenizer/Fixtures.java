package dev.jsloth.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** Access to the reference tokenizer fixtures copied into the test resources. */
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
        URL url = Fixtures.class.getResource("/fixtures/" + fixture + "/tokenizer.json");
        if (url == null) {
            throw new IllegalStateException("missing test resource fixtures/" + fixture);
        }
        try {
            return Path.of(url.toURI()).getParent();
        } catch (URISyntaxException e) {
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
