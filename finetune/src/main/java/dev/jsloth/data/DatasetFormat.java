package dev.jsloth.data;

/** The row layout of a dataset file; {@link #AUTO} detects it from the first valid row of each file. */
public enum DatasetFormat {
    /**
     * Detect per file from its first valid row: chat if the row has {@code messages} or {@code conversations}, else
     * alpaca if it has {@code instruction} and {@code output}, else text if it has {@code text}. Later rows must be
     * of the same format.
     */
    AUTO,
    /** Rows with {@code instruction}, optional {@code input}, and {@code output} strings. */
    ALPACA,
    /** Rows with {@code messages} ({@code role}/{@code content}) or ShareGPT {@code conversations} ({@code from}/{@code value}). */
    CHAT,
    /** Rows with a {@code text} string. */
    TEXT
}
