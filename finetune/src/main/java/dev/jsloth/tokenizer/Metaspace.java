package dev.jsloth.tokenizer;

import java.util.ArrayList;
import java.util.List;

/**
 * SentencePiece's treatment of spaces: every {@code ' '} becomes a visible replacement character
 * ({@code '▁'}), optionally prepended to the text and optionally used to split words. Used both as a
 * pre-tokenizer and as a decoder.
 *
 * @param replacement the replacement code point
 * @param prependScheme when to prepend the replacement to a piece
 * @param split whether to split pieces before each replacement character
 */
record Metaspace(int replacement, Prepend prependScheme, boolean split) implements PreTokenizers.PreTokenizer {

    /** When the replacement is prepended to a piece that does not already start with it. */
    enum Prepend {
        /** Every piece. */
        ALWAYS,
        /** Only the piece that starts the original input. */
        FIRST,
        /** Never. */
        NEVER
    }

    /** Parses a Metaspace pre-tokenizer or decoder object. */
    static Metaspace parse(Json json) throws TokenizerFormatException {
        int replacement = json.require("replacement").asCodePoint();
        Prepend scheme = Prepend.ALWAYS;
        Json schemeField = json.get("prepend_scheme");
        if (!schemeField.isNull()) {
            scheme = switch (schemeField.asString()) {
                case "always" -> Prepend.ALWAYS;
                case "first" -> Prepend.FIRST;
                case "never" -> Prepend.NEVER;
                default -> throw schemeField.error("unknown prepend_scheme \"" + schemeField.asString() + "\"");
            };
        }
        // Files written before prepend_scheme existed only have add_prefix_space.
        Json legacy = json.get("add_prefix_space");
        // tokenizers 0.23 accepts add_prefix_space: false only beside prepend_scheme "never" (without one, the
        // default "always" disagrees with it and loading fails)
        if (!legacy.isNull() && !json.bool("add_prefix_space", true) && scheme != Prepend.NEVER) {
            throw legacy.error("add_prefix_space does not match declared prepend_scheme");
        }
        return new Metaspace(replacement, scheme, json.bool("split", true));
    }

    private String replacementString() {
        return Character.toString(replacement);
    }

    @Override
    public void preTokenize(PreTokenizedString pts) {
        String rep = replacementString();
        TextPattern space = TextPattern.chars(c -> c == ' ');
        TextPattern delimiter = TextPattern.chars(c -> c == replacement);
        pts.split(ns -> {
            ns.replace(space, rep);
            boolean prepend = switch (prependScheme) {
                case ALWAYS -> !ns.get().startsWith(rep);
                case FIRST -> !ns.get().startsWith(rep) && ns.originalStart() == 0;
                case NEVER -> false;
            };
            if (prepend) {
                ns.prepend(rep);
            }
            return split ? ns.split(delimiter, SplitBehavior.MERGED_WITH_NEXT) : List.of(ns);
        });
    }

    /**
     * The decoder: replacement characters become spaces, except at the start of the first token
     * when a prefix was prepended on the way in.
     */
    List<String> decode(List<String> tokens) {
        List<String> out = new ArrayList<>(tokens.size());
        for (int i = 0; i < tokens.size(); i++) {
            String token = tokens.get(i);
            StringBuilder sb = new StringBuilder(token.length());
            boolean dropLeading = i == 0 && prependScheme != Prepend.NEVER;
            for (int k = 0; k < token.length(); ) {
                int cp = token.codePointAt(k);
                if (cp == replacement) {
                    // tokenizers drops every replacement of the first token, not only the leading one.
                    if (!dropLeading) {
                        sb.append(' ');
                    }
                } else {
                    sb.appendCodePoint(cp);
                }
                k += Character.charCount(cp);
            }
            out.add(sb.toString());
        }
        return out;
    }
}
