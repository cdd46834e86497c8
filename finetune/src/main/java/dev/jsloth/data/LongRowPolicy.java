package dev.jsloth.data;

/** What data preparation does with a row whose tokens outnumber the sequence length. */
public enum LongRowPolicy {
    /** Plain text rows are split ({@link #SPLIT}); prompt/response rows (Alpaca, chat) are truncated ({@link #TRUNCATE}). */
    AUTO,
    /**
     * Cut into pieces of the sequence length, each starting with the previous piece's last token, so that every token
     * after the row's first is still a target exactly once (Hugging Face's {@code run_clm} block grouping loses one a
     * block). Pieces with no trained token are left out.
     */
    SPLIT,
    /** Keep the first sequence length of tokens; the rest is not trained on (TRL's {@code max_length}). */
    TRUNCATE;

    /** Whether a row of this record type is split under this policy. */
    public boolean splits(Record r) {
        return this == SPLIT || this == AUTO && r instanceof TextRecord;
    }
}
