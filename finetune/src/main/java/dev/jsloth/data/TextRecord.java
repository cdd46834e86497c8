package dev.jsloth.data;

import java.util.Objects;

/**
 * A raw-text row (continued pre-training style): every token is trained.
 *
 * @param line 1-based source line (JSONL) or element index (JSON array)
 * @param text the text, never blank
 */
public record TextRecord(int line, String text) implements Record {
    public TextRecord {
        Objects.requireNonNull(text, "text");
    }
}
