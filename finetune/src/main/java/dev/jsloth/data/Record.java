package dev.jsloth.data;

/**
 * One validated training row of a dataset file.
 *
 * <p>{@link #line()} locates the row in its source: the 1-based line number for JSONL, or the 1-based element index
 * for a JSON array file.
 */
public sealed interface Record permits AlpacaRecord, ChatRecord, TextRecord {
    /** The 1-based source line (JSONL) or element index (JSON array) of this row. */
    int line();
}
