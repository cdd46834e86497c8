package dev.jsloth.tokenizer;

import java.util.ArrayList;
import java.util.List;
import java.util.function.IntPredicate;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Something to search for in a string: a regular expression, a literal string or a character
 * predicate ({@code Pattern} in tokenizers).
 *
 * <p>{@link #findMatches} returns spans covering the whole string, each flagged as a match or not,
 * and iterates over regex matches the way the Oniguruma binding used by tokenizers does (an empty
 * match right where the previous match ended is skipped).
 */
abstract sealed class TextPattern {
    /** A range {@code [start, end)} of the searched string; {@code match} tells whether the pattern matched it. */
    record Span(int start, int end, boolean match) {}

    /** The spans of {@code s}: matches and the gaps between them, in order, covering all of it. */
    abstract List<Span> findMatches(String s);

    /** This pattern with matches and gaps swapped ({@code invert: true} of the Split pre-tokenizer). */
    TextPattern inverted() {
        return new Inverted(this);
    }

    /** A regular expression in tokenizers' (Oniguruma) syntax. */
    static TextPattern regex(String onigPattern) {
        return new Regex(OnigRegex.compile(onigPattern));
    }

    /**
     * A pattern tokenizers compiles with Rust's {@code regex} crate rather than Oniguruma (the Whitespace
     * pre-tokenizer's): its Unicode {@code \w} (Alphabetic, marks, decimal digits, connector punctuation,
     * Join_Control) is Java's under {@link Pattern#UNICODE_CHARACTER_CLASS}.
     */
    static TextPattern rustRegex(String pattern) {
        return new Regex(Pattern.compile(pattern, Pattern.UNICODE_CHARACTER_CLASS));
    }

    /** A literal string (compiled as an escaped regex, as tokenizers does). */
    static TextPattern literal(String s) {
        return new Regex(Pattern.compile(Pattern.quote(s)));
    }

    /** Every single code point accepted by {@code predicate} is a match. */
    static TextPattern chars(IntPredicate predicate) {
        return new CharPredicate(predicate);
    }

    /** Parses a {@code {"String": ...}} or {@code {"Regex": ...}} pattern object. */
    static TextPattern parse(Json field) throws TokenizerFormatException {
        field.requireObject();
        if (field.has("String")) {
            return literal(field.string("String"));
        }
        if (field.has("Regex")) {
            Json regex = field.require("Regex");
            try {
                return regex(regex.asString());
            } catch (IllegalArgumentException e) {
                throw regex.error("unsupported or invalid regular expression: " + e.getMessage(), e);
            }
        }
        throw field.error("expected {\"String\": ...} or {\"Regex\": ...}");
    }

    private static final class Regex extends TextPattern {
        private final Pattern pattern;

        Regex(Pattern pattern) {
            this.pattern = pattern;
        }

        @Override
        List<Span> findMatches(String s) {
            List<Span> out = new ArrayList<>();
            if (s.isEmpty()) {
                out.add(new Span(0, 0, false));
                return out;
            }
            Matcher m = pattern.matcher(s);
            int prev = 0;
            int searchFrom = 0;
            int lastMatchEnd = -1;
            while (searchFrom <= s.length() && m.find(searchFrom)) {
                int start = m.start();
                int end = m.end();
                if (start == end && end == lastMatchEnd) {
                    // Oniguruma iteration: no empty match right after the previous match.
                    searchFrom += searchFrom < s.length() ? Character.charCount(s.codePointAt(searchFrom)) : 1;
                    continue;
                }
                if (prev != start) {
                    out.add(new Span(prev, start, false));
                }
                out.add(new Span(start, end, true));
                prev = end;
                searchFrom = end;
                lastMatchEnd = end;
            }
            if (prev != s.length()) {
                out.add(new Span(prev, s.length(), false));
            }
            return out;
        }
    }

    private static final class CharPredicate extends TextPattern {
        private final IntPredicate predicate;

        CharPredicate(IntPredicate predicate) {
            this.predicate = predicate;
        }

        @Override
        List<Span> findMatches(String s) {
            List<Span> out = new ArrayList<>();
            if (s.isEmpty()) {
                out.add(new Span(0, 0, false));
                return out;
            }
            int last = 0;
            for (int i = 0; i < s.length(); ) {
                int cp = s.codePointAt(i);
                int next = i + Character.charCount(cp);
                if (predicate.test(cp)) {
                    if (last < i) {
                        out.add(new Span(last, i, false));
                    }
                    out.add(new Span(i, next, true));
                    last = next;
                }
                i = next;
            }
            if (last < s.length()) {
                out.add(new Span(last, s.length(), false));
            }
            return out;
        }
    }

    private static final class Inverted extends TextPattern {
        private final TextPattern inner;

        Inverted(TextPattern inner) {
            this.inner = inner;
        }

        @Override
        List<Span> findMatches(String s) {
            List<Span> spans = inner.findMatches(s);
            List<Span> out = new ArrayList<>(spans.size());
            for (Span span : spans) {
                out.add(new Span(span.start(), span.end(), !span.match()));
            }
            return out;
        }
    }
}
