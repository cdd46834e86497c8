package dev.jsloth.data;

import java.util.Objects;

/**
 * An instruction-tuning row in the Stanford Alpaca layout.
 *
 * @param line        1-based source line (JSONL) or element index (JSON array)
 * @param instruction the task, never blank
 * @param input       optional context for the task; empty when the row has none
 * @param output      the response to train on, never blank
 */
public record AlpacaRecord(int line, String instruction, String input, String output) implements Record {
    public AlpacaRecord {
        Objects.requireNonNull(instruction, "instruction");
        Objects.requireNonNull(input, "input");
        Objects.requireNonNull(output, "output");
    }
}
