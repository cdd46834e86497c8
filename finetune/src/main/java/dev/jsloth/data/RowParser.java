package dev.jsloth.data;

import com.fasterxml.jackson.databind.JsonNode;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Turns one JSON row into a validated {@link Record}, or says precisely what is wrong with it.
 *
 * <p>Fields other than the ones a format reads are ignored. Every field that is read must be a JSON string, and the
 * required ones must not be blank.
 */
final class RowParser {
    /** ShareGPT speaker names and the roles they map to. */
    private static final Map<String, String> SHAREGPT_ROLES = Map.of(
            "human", Message.USER, "user", Message.USER,
            "gpt", Message.ASSISTANT, "assistant", Message.ASSISTANT,
            "system", Message.SYSTEM);

    private RowParser() {
    }

    /** A row that fails validation; the message says what is wrong, without the location. */
    static final class BadRowException extends Exception {
        BadRowException(String message) {
            super(message, null, false, false);
        }
    }

    /**
     * The format a row looks like from its fields: chat if it has {@code messages} or {@code conversations}, else
     * alpaca if it has {@code instruction} and {@code output}, else text if it has {@code text}; null if none.
     */
    static DatasetFormat detect(JsonNode row) {
        if (!row.isObject()) return null;
        if (row.has("messages") || row.has("conversations")) return DatasetFormat.CHAT;
        if (row.has("instruction") && row.has("output")) return DatasetFormat.ALPACA;
        if (row.has("text")) return DatasetFormat.TEXT;
        return null;
    }

    /** Validates {@code row} as {@code format} (not AUTO) and converts it. */
    static Record parse(JsonNode row, DatasetFormat format, int line) throws BadRowException {
        if (!row.isObject()) throw new BadRowException("expected a JSON object, got " + typeName(row));
        return switch (format) {
            case ALPACA -> new AlpacaRecord(line,
                    requiredText(row, "instruction", "instruction"),
                    optionalString(row, "input"),
                    requiredText(row, "output", "output"));
            case CHAT -> new ChatRecord(line, messages(row));
            case TEXT -> new TextRecord(line, requiredText(row, "text", "text"));
            case AUTO -> throw new IllegalArgumentException("AUTO is resolved by the loader");
        };
    }

    private static List<Message> messages(JsonNode row) throws BadRowException {
        if (given(row, "tools"))
            throw new BadRowException("field \"tools\" is not supported (tool definitions are not passed to the chat template; the row"
                    + " would be trained without them)");
        boolean shareGpt = !row.has("messages") && row.has("conversations");
        String field = shareGpt ? "conversations" : "messages";
        JsonNode list = row.get(field);
        if (list == null) throw new BadRowException("missing field \"messages\" (or ShareGPT \"conversations\")");
        if (!list.isArray()) throw new BadRowException("field \"" + field + "\" must be an array (got " + typeName(list) + ")");
        if (list.isEmpty()) throw new BadRowException("field \"" + field + "\" must not be empty");
        List<Message> messages = new ArrayList<>(list.size());
        for (int i = 0; i < list.size(); i++) {
            JsonNode m = list.get(i);
            String at = field + "[" + i + "]";
            if (!m.isObject()) throw new BadRowException("field \"" + at + "\" must be an object (got " + typeName(m) + ")");
            messages.add(shareGpt && !m.has("role") ? shareGptMessage(m, at) : roleContentMessage(m, at));
        }
        if (messages.stream().noneMatch(Message::isAssistant))
            throw new BadRowException("field \"" + field + "\" has no assistant message to train on");
        return messages;
    }

    /**
     * Message fields a chat template may render that this reader does not pass on (tool calls and their results):
     * a message that has one is refused, not trained on with the field silently left out of the rendered text.
     */
    private static final List<String> TOOL_FIELDS = List.of("tool_calls", "tool_call_id", "function_call");

    /** Present with something in it: exported datasets carry {@code "tools": []} or {@code "tool_calls": null} on every row. */
    private static boolean given(JsonNode obj, String field) {
        JsonNode v = obj.get(field);
        return v != null && !v.isNull() && !((v.isContainerNode() || v.isTextual()) && v.isEmpty());
    }

    private static Message roleContentMessage(JsonNode m, String at) throws BadRowException {
        for (String f : TOOL_FIELDS)
            if (given(m, f))
                throw new BadRowException("field \"" + at + "." + f + "\" is not supported (tool calls are not passed to the chat template;"
                        + " the row would be trained without them)");
        String role = requiredText(m, "role", at + ".role");
        if (!role.equals(Message.SYSTEM) && !role.equals(Message.USER) && !role.equals(Message.ASSISTANT))
            throw new BadRowException("field \"" + at + ".role\" must be one of system, user, assistant (got " + quote(role) + ")");
        return new Message(role, content(m, "content", at + ".content", role));
    }

    private static Message shareGptMessage(JsonNode m, String at) throws BadRowException {
        String from = requiredText(m, "from", at + ".from");
        String role = SHAREGPT_ROLES.get(from.toLowerCase(Locale.ROOT));
        if (role == null)
            throw new BadRowException("field \"" + at + ".from\" must be one of human, gpt, system (got " + quote(from) + ")");
        return new Message(role, content(m, "value", at + ".value", role));
    }

    /**
     * A message's text: a string, which may be empty for a system or user message (templates render an empty system
     * prompt, as transformers does) but not for an assistant one (nothing to train on).
     */
    private static String content(JsonNode m, String name, String path, String role) throws BadRowException {
        if (role.equals(Message.ASSISTANT)) return requiredText(m, name, path);
        JsonNode v = m.get(name);
        if (v == null) throw new BadRowException("missing field \"" + path + "\"");
        if (!v.isTextual()) throw new BadRowException("field \"" + path + "\" must be a string (got " + typeName(v) + ")");
        return v.textValue();
    }

    /** A present, string-typed, non-blank field. */
    private static String requiredText(JsonNode obj, String name, String path) throws BadRowException {
        JsonNode v = obj.get(name);
        if (v == null) throw new BadRowException("missing field \"" + path + "\"");
        if (!v.isTextual()) throw new BadRowException("field \"" + path + "\" must be a string (got " + typeName(v) + ")");
        if (v.textValue().isBlank()) throw new BadRowException("field \"" + path + "\" must not be empty");
        return v.textValue();
    }

    /** An absent field (empty) or a string-typed one, which may be empty. */
    private static String optionalString(JsonNode obj, String name) throws BadRowException {
        JsonNode v = obj.get(name);
        if (v == null) return "";
        if (!v.isTextual()) throw new BadRowException("field \"" + name + "\" must be a string (got " + typeName(v) + ")");
        return v.textValue();
    }

    static String typeName(JsonNode v) {
        return switch (v.getNodeType()) {
            case STRING -> "a string";
            case NUMBER -> "a number";
            case BOOLEAN -> "a boolean";
            case NULL -> "null";
            case ARRAY -> "an array";
            case OBJECT, POJO -> "an object";
            case BINARY -> "binary data";
            case MISSING -> "nothing";
        };
    }

    private static String quote(String s) {
        String shown = s.length() > 40 ? s.substring(0, 40) + "..." : s;
        return "\"" + shown.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n") + "\"";
    }
}
