package dev.jsloth.data;

import java.util.List;

/**
 * A conversation row.
 *
 * @param line     1-based source line (JSONL) or element index (JSON array)
 * @param messages the turns in order (an immutable copy)
 */
public record ChatRecord(int line, List<Message> messages) implements Record {
    public ChatRecord {
        messages = List.copyOf(messages);
    }
}
