package dev.jsloth.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.MissingNode;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * A JSON node of a {@code tokenizer.json} file together with its path, so that every type or value
 * error can name the file and the field ({@code model.merges[12]}).
 */
final class Json {
    private final String file;
    /** The parent node, or null for the root; the path is only built when an error needs it. */
    private final Json parent;
    /** The field name in the parent object, or null for an array element or the root. */
    private final String key;
    /** The index in the parent array (when {@link #key} is null and there is a parent). */
    private final int index;
    private final JsonNode node;

    private Json(String file, Json parent, String key, int index, JsonNode node) {
        this.file = file;
        this.parent = parent;
        this.key = key;
        this.index = index;
        this.node = node == null ? MissingNode.getInstance() : node;
    }

    /** The root object of the file named {@code file}. */
    static Json root(String file, JsonNode node) {
        return new Json(file, null, null, -1, node);
    }

    /** The path of this node, such as {@code model.merges[12]}. */
    String path() {
        String p = rawPath();
        return p.isEmpty() ? "<root>" : p;
    }

    private String rawPath() {
        if (parent == null) {
            return "";
        }
        String base = parent.rawPath();
        if (key == null) {
            return base + "[" + index + "]";
        }
        return childPath(base, key);
    }

    JsonNode node() {
        return node;
    }

    /** An error about this node. */
    TokenizerFormatException error(String message) {
        return new TokenizerFormatException(file + ": " + path() + ": " + message);
    }

    /** An error about this node, with a cause. */
    TokenizerFormatException error(String message, Throwable cause) {
        return new TokenizerFormatException(file + ": " + path() + ": " + message, cause);
    }

    /** True when the node is absent or JSON {@code null}. */
    boolean isNull() {
        return node.isMissingNode() || node.isNull();
    }

    boolean isObject() {
        return node.isObject();
    }

    boolean isArray() {
        return node.isArray();
    }

    boolean isString() {
        return node.isTextual();
    }

    boolean has(String name) {
        return node.isObject() && node.has(name) && !node.get(name).isNull();
    }

    /** The child field {@code name} (possibly absent); this node must be an object. */
    Json get(String name) throws TokenizerFormatException {
        requireObject();
        return new Json(file, this, name, -1, node.get(name));
    }

    /** The child field {@code name}, which must be present and not null. */
    Json require(String name) throws TokenizerFormatException {
        Json child = get(name);
        if (child.isNull()) {
            throw child.error("required field is missing or null");
        }
        return child;
    }

    /** The required string field {@code name}. */
    String string(String name) throws TokenizerFormatException {
        return require(name).asString();
    }

    /** The optional string field {@code name}; {@code fallback} when absent or null. */
    String optString(String name, String fallback) throws TokenizerFormatException {
        Json child = get(name);
        return child.isNull() ? fallback : child.asString();
    }

    /** The optional boolean field {@code name}; {@code fallback} when absent or null. */
    boolean bool(String name, boolean fallback) throws TokenizerFormatException {
        Json child = get(name);
        if (child.isNull()) {
            return fallback;
        }
        if (!child.node.isBoolean()) {
            throw child.error("expected a boolean, found " + child.describe());
        }
        return child.node.booleanValue();
    }

    /** The optional non-negative integer field {@code name}; {@code fallback} when absent or null. */
    int nonNegativeInt(String name, int fallback) throws TokenizerFormatException {
        Json child = get(name);
        return child.isNull() ? fallback : child.asNonNegativeInt();
    }

    /** This node as a string. */
    String asString() throws TokenizerFormatException {
        if (!node.isTextual()) {
            throw error("expected a string, found " + describe());
        }
        return node.textValue();
    }

    /** This node as an integer in {@code [0, Integer.MAX_VALUE]}. */
    int asNonNegativeInt() throws TokenizerFormatException {
        if (!node.isIntegralNumber() || !node.canConvertToInt() || node.intValue() < 0) {
            throw error("expected a non-negative 32-bit integer, found " + describe());
        }
        return node.intValue();
    }

    /** This node as a single character (one Unicode code point). */
    int asCodePoint() throws TokenizerFormatException {
        String s = asString();
        if (s.isEmpty() || s.codePointCount(0, s.length()) != 1) {
            throw error("expected a single character, found \"" + s + "\"");
        }
        return s.codePointAt(0);
    }

    /** The elements of this array node. */
    List<Json> elements() throws TokenizerFormatException {
        if (!node.isArray()) {
            throw error("expected an array, found " + describe());
        }
        List<Json> out = new ArrayList<>(node.size());
        for (int i = 0; i < node.size(); i++) {
            out.add(new Json(file, this, null, i, node.get(i)));
        }
        return out;
    }

    /** The fields of this object node, in file order. */
    List<Map.Entry<String, Json>> fields() throws TokenizerFormatException {
        requireObject();
        List<Map.Entry<String, Json>> out = new ArrayList<>(node.size());
        for (Map.Entry<String, JsonNode> e : node.properties()) {
            out.add(Map.entry(e.getKey(), new Json(file, this, e.getKey(), -1, e.getValue())));
        }
        return out;
    }

    /** The {@code type} tag of a component object. */
    String type() throws TokenizerFormatException {
        return string("type");
    }

    void requireObject() throws TokenizerFormatException {
        if (!node.isObject()) {
            throw error("expected an object, found " + describe());
        }
    }

    String describe() {
        if (node.isMissingNode()) {
            return "nothing";
        }
        return switch (node.getNodeType()) {
            case ARRAY -> "an array";
            case OBJECT -> "an object";
            case STRING -> "a string";
            case NUMBER -> "the number " + node;
            case BOOLEAN -> "the boolean " + node;
            case NULL -> "null";
            default -> node.getNodeType().toString().toLowerCase(java.util.Locale.ROOT);
        };
    }

    private static String childPath(String path, String name) {
        boolean plain = !name.isEmpty();
        for (int i = 0; i < name.length() && plain; i++) {
            char c = name.charAt(i);
            plain = c == '_' || (c < 128 && Character.isLetterOrDigit(c));
        }
        if (plain) {
            return path.isEmpty() ? name : path + "." + name;
        }
        return path + "[\"" + name.replace("\\", "\\\\").replace("\"", "\\\"") + "\"]";
    }

    /** Formats a JSON pointer (from a parser location) the same way as field paths. */
    static String pointerToPath(com.fasterxml.jackson.core.JsonPointer pointer) {
        StringBuilder sb = new StringBuilder();
        for (com.fasterxml.jackson.core.JsonPointer p = pointer; p != null && !p.matches(); p = p.tail()) {
            if (p.mayMatchElement()) {
                sb.append('[').append(p.getMatchingIndex()).append(']');
            } else {
                String name = p.getMatchingProperty();
                if (sb.length() > 0) {
                    sb.append('.');
                }
                sb.append(name);
            }
        }
        return sb.length() == 0 ? "<root>" : sb.toString();
    }
}
