package dev.jsloth.tokenizer;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * What happens to the delimiters when a string is split ({@code SplitDelimiterBehavior} in
 * tokenizers).
 */
enum SplitBehavior {
    /** Delimiters are dropped. */
    REMOVED,
    /** Every delimiter becomes its own piece. */
    ISOLATED,
    /** A delimiter is glued to the end of the piece before it. */
    MERGED_WITH_PREVIOUS,
    /** A delimiter is glued to the start of the piece after it. */
    MERGED_WITH_NEXT,
    /** Consecutive delimiters (and consecutive non-delimiters) form one piece each. */
    CONTIGUOUS;

    /** Parses the serialized name ({@code "Isolated"}, {@code "MergedWithNext"}, ...). */
    static SplitBehavior parse(Json field) throws TokenizerFormatException {
        String s = field.asString();
        return switch (s) {
            case "Removed" -> REMOVED;
            case "Isolated" -> ISOLATED;
            case "MergedWithPrevious" -> MERGED_WITH_PREVIOUS;
            case "MergedWithNext" -> MERGED_WITH_NEXT;
            case "Contiguous" -> CONTIGUOUS;
            default -> throw field.error("unknown split behavior \"" + s + "\"");
        };
    }

    /**
     * Turns the spans of a pattern (covering the whole string, each flagged as match or not) into
     * the {@code [start, end)} ranges of the pieces to keep.
     */
    List<int[]> apply(List<TextPattern.Span> spans) {
        List<int[]> out = new ArrayList<>(spans.size());
        switch (this) {
            case ISOLATED -> {
                for (TextPattern.Span s : spans) {
                    out.add(new int[] {s.start(), s.end()});
                }
            }
            case REMOVED -> {
                for (TextPattern.Span s : spans) {
                    if (!s.match()) {
                        out.add(new int[] {s.start(), s.end()});
                    }
                }
            }
            case CONTIGUOUS -> {
                boolean previousMatch = false;
                for (TextPattern.Span s : spans) {
                    if (s.match() == previousMatch && !out.isEmpty()) {
                        out.getLast()[1] = s.end();
                    } else {
                        out.add(new int[] {s.start(), s.end()});
                    }
                    previousMatch = s.match();
                }
            }
            case MERGED_WITH_PREVIOUS -> {
                boolean previousMatch = false;
                for (TextPattern.Span s : spans) {
                    if (s.match() && !previousMatch && !out.isEmpty()) {
                        out.getLast()[1] = s.end();
                    } else {
                        out.add(new int[] {s.start(), s.end()});
                    }
                    previousMatch = s.match();
                }
            }
            case MERGED_WITH_NEXT -> {
                boolean previousMatch = false;
                for (int i = spans.size() - 1; i >= 0; i--) {
                    TextPattern.Span s = spans.get(i);
                    if (s.match() && !previousMatch && !out.isEmpty()) {
                        out.getLast()[0] = s.start();
                    } else {
                        out.add(new int[] {s.start(), s.end()});
                    }
                    previousMatch = s.match();
                }
                java.util.Collections.reverse(out);
            }
        }
        return out;
    }

    @Override
    public String toString() {
        return name().toLowerCase(Locale.ROOT);
    }
}
