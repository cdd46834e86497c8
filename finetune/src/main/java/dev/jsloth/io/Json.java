package dev.jsloth.io;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** JSON reading with errors that name the file and position, and atomic JSON writing. */
public final class Json {
    public static final ObjectMapper MAPPER = new ObjectMapper()
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
            .enable(SerializationFeature.INDENT_OUTPUT);
    /** JSON files larger than this are refused (configs and indexes are small). */
    public static final long MAX_BYTES = 64L << 20;

    private Json() {
    }

    public static JsonNode read(Path file) throws IOException {
        long size = Files.size(file);
        if (size > MAX_BYTES) throw new CheckpointFormatException(file, "", "file is " + size + " bytes, larger than the " + MAX_BYTES + " allowed for JSON");
        try {
            JsonNode n = MAPPER.readTree(Files.readAllBytes(file));
            if (n == null || n.isMissingNode()) throw new CheckpointFormatException(file, "", "file is empty");
            return n;
        } catch (JsonProcessingException e) {
            String loc = e.getLocation() == null ? "" : "line " + e.getLocation().getLineNr() + ", column " + e.getLocation().getColumnNr();
            throw new CheckpointFormatException(file, loc, "invalid JSON: " + e.getOriginalMessage());
        }
    }

    /**
     * {@code node} with every NaN or infinite number replaced by null, in place where it is a container: JSON has no
     * such numbers (Jackson would write them as the strings "NaN" and "Infinity").
     */
    public static JsonNode nonFiniteAsNull(JsonNode node) {
        if (node.isNumber() && !Double.isFinite(node.doubleValue())) return com.fasterxml.jackson.databind.node.NullNode.getInstance();
        if (node instanceof com.fasterxml.jackson.databind.node.ObjectNode o)
            for (java.util.Map.Entry<String, JsonNode> e : o.properties()) e.setValue(nonFiniteAsNull(e.getValue()));
        else if (node instanceof com.fasterxml.jackson.databind.node.ArrayNode a)
            for (int i = 0; i < a.size(); i++) a.set(i, nonFiniteAsNull(a.get(i)));
        return node;
    }

    public static void write(Path file, Object value) throws IOException {
        AtomicFiles.write(file, MAPPER.writeValueAsBytes(value));
    }
}
