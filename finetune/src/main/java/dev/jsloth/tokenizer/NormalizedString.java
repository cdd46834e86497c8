package dev.jsloth.tokenizer;

import java.util.ArrayList;
import java.util.List;
import java.util.function.IntFunction;

/**
 * A piece of the input text being normalized and split, as in Hugging Face {@code tokenizers}.
 *
 * <p>Besides the current (normalized) text, it remembers for every UTF-16 unit the offset in the
 * original input where the character it came from starts, and the original offset where the piece
 * itself starts. The only consumer of offsets is {@link Metaspace} with {@code prepend_scheme:
 * "first"}, which prepends its replacement only to the piece that starts the original input.
 */
final class NormalizedString {
    private String text;
    /** For each UTF-16 unit of {@link #text}, the original start offset of the character it came from. */
    private int[] origin;
    /** The original offset where this piece starts ({@code offsets_original().0} in tokenizers). */
    private final int originalStart;

    private NormalizedString(String text, int[] origin, int originalStart) {
        this.text = text;
        this.origin = origin;
        this.originalStart = originalStart;
    }

    /** A fresh, unnormalized string. */
    static NormalizedString of(String text) {
        int[] origin = new int[text.length()];
        for (int i = 0; i < origin.length; i++) {
            origin[i] = i;
        }
        return new NormalizedString(text, origin, 0);
    }

    String get() {
        return text;
    }

    boolean isEmpty() {
        return text.isEmpty();
    }

    int length() {
        return text.length();
    }

    /** The original offset where this piece starts. */
    int originalStart() {
        return originalStart;
    }

    /** The sub-piece {@code [start, end)} of the normalized text. */
    NormalizedString slice(int start, int end) {
        int[] sub = java.util.Arrays.copyOfRange(origin, start, end);
        int shift = originalStart;
        if (start < end) {
            shift = Integer.MAX_VALUE;
            for (int o : sub) {
                shift = Math.min(shift, o);
            }
        }
        return new NormalizedString(text.substring(start, end), sub, shift);
    }

    /** Prepends {@code s}; nothing happens on an empty string (as in tokenizers). */
    NormalizedString prepend(String s) {
        if (text.isEmpty() || s.isEmpty()) {
            return this;
        }
        int[] o = new int[s.length() + origin.length];
        java.util.Arrays.fill(o, 0, s.length(), origin[0]);
        System.arraycopy(origin, 0, o, s.length(), origin.length);
        text = s + text;
        origin = o;
        return this;
    }

    /** Appends {@code s}; nothing happens on an empty string (as in tokenizers). */
    NormalizedString append(String s) {
        if (text.isEmpty() || s.isEmpty()) {
            return this;
        }
        int[] o = java.util.Arrays.copyOf(origin, origin.length + s.length());
        java.util.Arrays.fill(o, origin.length, o.length, origin[origin.length - 1]);
        text = text + s;
        origin = o;
        return this;
    }

    /** Replaces every match of {@code pattern} by {@code content}. */
    NormalizedString replace(TextPattern pattern, String content) {
        List<TextPattern.Span> spans = pattern.findMatches(text);
        StringBuilder sb = new StringBuilder(text.length());
        IntList o = new IntList(origin.length);
        for (TextPattern.Span span : spans) {
            if (!span.match()) {
                sb.append(text, span.start(), span.end());
                o.addRange(origin, span.start(), span.end());
            } else if (!content.isEmpty()) {
                // Inserted characters share the alignment of the last replaced one (or the previous one).
                int at = span.end() > 0 ? origin[span.end() - 1] : 0;
                sb.append(content);
                o.addRepeated(at, content.length());
            }
        }
        text = sb.toString();
        origin = o.toArray();
        return this;
    }

    /**
     * Maps every code point through {@code f} (which returns its replacement, possibly empty or
     * several characters). All produced characters keep the origin of their source character.
     */
    NormalizedString mapCodePoints(IntFunction<String> f) {
        StringBuilder sb = new StringBuilder(text.length());
        IntList o = new IntList(origin.length);
        for (int i = 0; i < text.length(); ) {
            int cp = text.codePointAt(i);
            String r = f.apply(cp);
            sb.append(r);
            o.addRepeated(origin[i], r.length());
            i += Character.charCount(cp);
        }
        text = sb.toString();
        origin = o.toArray();
        return this;
    }

    /**
     * Replaces every UTF-16 unit by {@code table[unit]} when all units are below
     * {@code table.length} (a length-preserving fast path); returns false, changing nothing,
     * otherwise.
     */
    boolean mapCharsIfAllBelow(char[] table) {
        char[] chars = text.toCharArray();
        for (int i = 0; i < chars.length; i++) {
            char c = chars[i];
            if (c >= table.length) {
                return false;
            }
            chars[i] = table[c];
        }
        text = new String(chars);
        return true;
    }

    /** Removes leading and/or trailing white space (Unicode White_Space). */
    NormalizedString strip(boolean left, boolean right) {
        int start = 0;
        int end = text.length();
        if (left) {
            while (start < end && UnicodeText.isWhiteSpace(text.codePointAt(start))) {
                start += Character.charCount(text.codePointAt(start));
            }
        }
        if (right) {
            while (end > start && UnicodeText.isWhiteSpace(text.codePointBefore(end))) {
                end -= Character.charCount(text.codePointBefore(end));
            }
        }
        if (start != 0 || end != text.length()) {
            text = text.substring(start, end);
            origin = java.util.Arrays.copyOfRange(origin, start, end);
        }
        return this;
    }

    /** Applies a Unicode normalization form; characters keep the origin of their source cluster. */
    NormalizedString unicodeNormalize(java.text.Normalizer.Form form) {
        if (java.text.Normalizer.isNormalized(text, form)) {
            return this;
        }
        String whole = java.text.Normalizer.normalize(text, form);
        // Normalize cluster by cluster (a starter and the marks that follow) to keep alignments.
        StringBuilder sb = new StringBuilder(whole.length());
        IntList o = new IntList(whole.length());
        int i = 0;
        while (i < text.length()) {
            int j = i + Character.charCount(text.codePointAt(i));
            while (j < text.length() && UnicodeText.continuesCluster(text.codePointAt(j))) {
                j += Character.charCount(text.codePointAt(j));
            }
            String part = java.text.Normalizer.normalize(text.substring(i, j), form);
            sb.append(part);
            o.addRepeated(origin[i], part.length());
            i = j;
        }
        if (sb.toString().equals(whole)) {
            text = whole;
            origin = o.toArray();
        } else {
            int first = origin.length == 0 ? 0 : origin[0];
            int[] flat = new int[whole.length()];
            java.util.Arrays.fill(flat, first);
            text = whole;
            origin = flat;
        }
        return this;
    }

    /** Splits with {@code pattern} according to {@code behavior} (tokenizers' {@code split}). */
    List<NormalizedString> split(TextPattern pattern, SplitBehavior behavior) {
        List<TextPattern.Span> matches = pattern.findMatches(text);
        List<int[]> splits = behavior.apply(matches);
        List<NormalizedString> out = new ArrayList<>(splits.size());
        for (int[] s : splits) {
            out.add(slice(s[0], s[1]));
        }
        return out;
    }

    @Override
    public String toString() {
        return text;
    }

    /** A small growable int array. */
    static final class IntList {
        private int[] data;
        private int size;

        IntList(int capacity) {
            data = new int[Math.max(4, capacity)];
        }

        void add(int v) {
            if (size == data.length) {
                data = java.util.Arrays.copyOf(data, data.length * 2);
            }
            data[size++] = v;
        }

        void addRepeated(int v, int count) {
            for (int k = 0; k < count; k++) {
                add(v);
            }
        }

        void addRange(int[] src, int from, int to) {
            for (int k = from; k < to; k++) {
                add(src[k]);
            }
        }

        void addAll(int[] src) {
            addRange(src, 0, src.length);
        }

        int size() {
            return size;
        }

        int[] toArray() {
            return java.util.Arrays.copyOf(data, size);
        }
    }
}
