package dev.jsloth.tokenizer;

import java.util.ArrayList;
import java.util.List;

/**
 * Pre-tokenizers: they cut the normalized text into the words the model tokenizes separately.
 * Supported types: {@code Sequence}, {@code Split}, {@code ByteLevel}, {@code Metaspace},
 * {@code Whitespace}, {@code WhitespaceSplit}, {@code Digits}, {@code Punctuation},
 * {@code CharDelimiterSplit} and {@code BertPreTokenizer}.
 */
final class PreTokenizers {
    private PreTokenizers() {}

    /** One pre-tokenization step. */
    interface PreTokenizer {
        void preTokenize(PreTokenizedString pts);
    }

    /** Parses the {@code pre_tokenizer} field; null (or absent) means none. */
    static PreTokenizer parse(Json json) throws TokenizerFormatException {
        if (json.isNull()) {
            return null;
        }
        String type = json.type();
        return switch (type) {
            case "Sequence" -> {
                List<PreTokenizer> steps = new ArrayList<>();
                for (Json step : json.require("pretokenizers").elements()) {
                    PreTokenizer p = parse(step);
                    if (p == null) {
                        throw step.error("expected a pre-tokenizer object, found null");
                    }
                    steps.add(p);
                }
                yield new Sequence(List.copyOf(steps));
            }
            case "Split" -> {
                TextPattern pattern = TextPattern.parse(json.require("pattern"));
                SplitBehavior behavior = SplitBehavior.parse(json.require("behavior"));
                boolean invert = json.bool("invert", false);
                yield new Split(invert ? pattern.inverted() : pattern, behavior);
            }
            case "ByteLevel" -> ByteLevel.PreTokenizer.parse(json);
            case "Metaspace" -> Metaspace.parse(json);
            case "Whitespace" -> new Split(TextPattern.rustRegex("\\w+|[^\\w\\s]+").inverted(), SplitBehavior.REMOVED);
            case "WhitespaceSplit" -> new Split(TextPattern.chars(UnicodeText::isWhiteSpace), SplitBehavior.REMOVED);
            case "Digits" -> new Split(TextPattern.chars(PreTokenizers::isNumeric),
                    json.bool("individual_digits", false) ? SplitBehavior.ISOLATED : SplitBehavior.CONTIGUOUS);
            case "Punctuation" -> {
                Json behavior = json.get("behavior");
                yield new Split(TextPattern.chars(UnicodeText::isPunctuation),
                        behavior.isNull() ? SplitBehavior.ISOLATED : SplitBehavior.parse(behavior));
            }
            case "CharDelimiterSplit" -> {
                int delimiter = json.require("delimiter").asCodePoint();
                yield new Split(TextPattern.chars(c -> c == delimiter), SplitBehavior.REMOVED);
            }
            case "BertPreTokenizer" -> new Sequence(List.of(
                    new Split(TextPattern.chars(UnicodeText::isWhiteSpace), SplitBehavior.REMOVED),
                    new Split(TextPattern.chars(UnicodeText::isPunctuation), SplitBehavior.ISOLATED)));
            default -> throw json.get("type").error("unsupported pre-tokenizer type \"" + type + "\"");
        };
    }

    /** Rust's {@code char::is_numeric}: general categories Nd, Nl and No. */
    static boolean isNumeric(int cp) {
        int t = Character.getType(cp);
        return t == Character.DECIMAL_DIGIT_NUMBER || t == Character.LETTER_NUMBER || t == Character.OTHER_NUMBER;
    }

    /** Several pre-tokenizers applied in order. */
    record Sequence(List<PreTokenizer> steps) implements PreTokenizer {
        @Override
        public void preTokenize(PreTokenizedString pts) {
            for (PreTokenizer step : steps) {
                step.preTokenize(pts);
            }
        }
    }

    /** Splits every piece on a pattern. */
    record Split(TextPattern pattern, SplitBehavior behavior) implements PreTokenizer {
        @Override
        public void preTokenize(PreTokenizedString pts) {
            pts.split(ns -> ns.split(pattern, behavior));
        }
    }
}
