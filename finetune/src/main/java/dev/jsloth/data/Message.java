package dev.jsloth.data;

import java.util.Objects;

/**
 * One turn of a conversation.
 *
 * @param role    {@code system}, {@code user} or {@code assistant} (the loader only produces these three)
 * @param content the text of the turn
 */
public record Message(String role, String content) {
    public static final String SYSTEM = "system";
    public static final String USER = "user";
    public static final String ASSISTANT = "assistant";

    public Message {
        Objects.requireNonNull(role, "role");
        Objects.requireNonNull(content, "content");
    }

    /** True for an assistant turn, the turns a completion-only example trains on. */
    public boolean isAssistant() {
        return ASSISTANT.equals(role);
    }
}
