package dev.jsloth.tokenizer;

import java.text.Normalizer.Form;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Normalizers: they rewrite the text before it is split. Supported types: {@code Sequence},
 * {@code Prepend}, {@code Replace}, {@code NFC}, {@code NFD}, {@code NFKC},
 * {@code NFKD}, {@code Lowercase}, {@code Strip}, {@code StripAccents} and {@code ByteLevel}.
 */
final class Normalizers {
    private Normalizers() {}

    /** One normalization step. */
    interface Normalizer {
        void normalize(NormalizedString ns);

        /** Normalizes a plain string (used for the content of normalized added tokens). */
        default String normalize(String s) {
            NormalizedString ns = NormalizedString.of(s);
            normalize(ns);
            return ns.get();
        }
    }

    /** Parses the {@code normalizer} field; null (or absent) means none. */
    static Normalizer parse(Json json) throws TokenizerFormatException {
        if (json.isNull()) {
            return null;
        }
        String type = json.type();
        return switch (type) {
            case "Sequence" -> {
                List<Normalizer> steps = new ArrayList<>();
                for (Json step : json.require("normalizers").elements()) {
                    Normalizer n = parse(step);
                    if (n == null) {
                        throw step.error("expected a normalizer object, found null");
                    }
                    steps.add(n);
                }
                yield new Sequence(List.copyOf(steps));
            }
            case "Prepend" -> new Prepend(json.string("prepend"));
            case "Replace" -> new Replace(TextPattern.parse(json.require("pattern")), json.string("content"));
            case "NFC" -> new Unicode(Form.NFC);
            case "NFD" -> new Unicode(Form.NFD);
            case "NFKC" -> new Unicode(Form.NFKC);
            case "NFKD" -> new Unicode(Form.NFKD);
            case "Lowercase" -> new Lowercase();
            case "Strip" -> { // both fields required, as tokenizers' serde reads them
                json.require("strip_left");
                json.require("strip_right");
                yield new Strip(json.bool("strip_left", true), json.bool("strip_right", true));
            }
            case "StripAccents" -> new StripAccents();
            case "ByteLevel" -> new ByteLevelNormalizer();
            default -> throw json.get("type").error("unsupported normalizer type \"" + type + "\"");
        };
    }

    /** Several normalizers applied in order. */
    record Sequence(List<Normalizer> steps) implements Normalizer {
        @Override
        public void normalize(NormalizedString ns) {
            for (Normalizer step : steps) {
                step.normalize(ns);
            }
        }
    }

    /** Prepends a string to non-empty text (Llama 2's {@code "▁"}). */
    record Prepend(String prefix) implements Normalizer {
        @Override
        public void normalize(NormalizedString ns) {
            ns.prepend(prefix);
        }
    }

    /** Replaces every match of a pattern (taken literally) by {@code content}. */
    record Replace(TextPattern pattern, String content) implements Normalizer {
        @Override
        public void normalize(NormalizedString ns) {
            ns.replace(pattern, content);
        }
    }

    /** A Unicode normalization form. */
    record Unicode(Form form) implements Normalizer {
        @Override
        public void normalize(NormalizedString ns) {
            ns.unicodeNormalize(form);
        }
    }

    /** Lower-cases every character (full Unicode mapping, character by character). */
    record Lowercase() implements Normalizer {
        @Override
        public void normalize(NormalizedString ns) {
            ns.mapCodePoints(cp -> {
                if (cp < 128) {
                    return String.valueOf((char) (cp >= 'A' && cp <= 'Z' ? cp + 32 : cp));
                }
                return Character.toString(cp).toLowerCase(Locale.ROOT);
            });
        }
    }

    /** Removes white space at the start and/or end. */
    record Strip(boolean left, boolean right) implements Normalizer {
        @Override
        public void normalize(NormalizedString ns) {
            ns.strip(left, right);
        }
    }

    /** Removes combining marks (meant to follow NFD or NFKD). */
    record StripAccents() implements Normalizer {
        @Override
        public void normalize(NormalizedString ns) {
            ns.mapCodePoints(cp -> UnicodeText.isMark(cp) ? "" : Character.toString(cp));
        }
    }

    /** Rewrites the text in GPT-2's byte characters. */
    record ByteLevelNormalizer() implements Normalizer {
        @Override
        public void normalize(NormalizedString ns) {
            ByteLevel.toByteChars(ns);
        }
    }
}
