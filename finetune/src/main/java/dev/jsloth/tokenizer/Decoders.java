package dev.jsloth.tokenizer;

import java.util.ArrayList;
import java.util.List;

/**
 * Decoders: they turn the tokens of a sequence of ids back into text. Supported types:
 * {@code Sequence}, {@code Replace}, {@code ByteFallback}, {@code Fuse}, {@code Strip},
 * {@code Metaspace}, {@code ByteLevel}, {@code BPEDecoder} and {@code WordPiece}.
 */
final class Decoders {
    private Decoders() {}

    /** One decoding step: a list of token strings to a new list (tokenizers' {@code decode_chain}). */
    interface Decoder {
        List<String> decodeChain(List<String> tokens);

        /** Runs the decoder and joins the result. */
        default String decode(List<String> tokens) {
            return String.join("", decodeChain(tokens));
        }
    }

    /** Parses the {@code decoder} field; null (or absent) means none. */
    static Decoder parse(Json json) throws TokenizerFormatException {
        if (json.isNull()) {
            return null;
        }
        String type = json.type();
        return switch (type) {
            case "Sequence" -> {
                List<Decoder> steps = new ArrayList<>();
                for (Json step : json.require("decoders").elements()) {
                    Decoder d = parse(step);
                    if (d == null) {
                        throw step.error("expected a decoder object, found null");
                    }
                    steps.add(d);
                }
                yield new Sequence(List.copyOf(steps));
            }
            case "Replace" -> new Replace(TextPattern.parse(json.require("pattern")), json.string("content"));
            case "ByteFallback" -> new ByteFallback();
            case "Fuse" -> new Fuse();
            case "Strip" -> new Strip(json.require("content").asCodePoint(), json.nonNegativeInt("start", 0),
                    json.nonNegativeInt("stop", 0));
            case "Metaspace" -> {
                Metaspace m = Metaspace.parse(json);
                yield m::decode;
            }
            case "ByteLevel" -> ByteLevel::decode;
            case "BPEDecoder" -> new BpeSuffix(json.optString("suffix", "</w>"));
            case "WordPiece" -> new WordPiece(json.optString("prefix", "##"), json.bool("cleanup", true));
            default -> throw json.get("type").error("unsupported decoder type \"" + type + "\"");
        };
    }

    /** Several decoders applied in order. */
    record Sequence(List<Decoder> steps) implements Decoder {
        @Override
        public List<String> decodeChain(List<String> tokens) {
            for (Decoder step : steps) {
                tokens = step.decodeChain(tokens);
            }
            return tokens;
        }
    }

    /** Replaces every match of a pattern in each token. */
    record Replace(TextPattern pattern, String content) implements Decoder {
        @Override
        public List<String> decodeChain(List<String> tokens) {
            List<String> out = new ArrayList<>(tokens.size());
            for (String token : tokens) {
                StringBuilder sb = new StringBuilder(token.length());
                for (TextPattern.Span span : pattern.findMatches(token)) {
                    if (span.match()) {
                        sb.append(content);
                    } else {
                        sb.append(token, span.start(), span.end());
                    }
                }
                out.add(sb.toString());
            }
            return out;
        }
    }

    /**
     * Turns runs of {@code <0xNN>} tokens into the text their bytes spell; a run that is not valid
     * UTF-8 becomes one U+FFFD per byte.
     */
    record ByteFallback() implements Decoder {
        @Override
        public List<String> decodeChain(List<String> tokens) {
            List<String> out = new ArrayList<>(tokens.size());
            byte[] pending = new byte[16];
            int count = 0;
            for (String token : tokens) {
                int b = byteOf(token);
                if (b >= 0) {
                    if (count == pending.length) {
                        pending = java.util.Arrays.copyOf(pending, count * 2);
                    }
                    pending[count++] = (byte) b;
                    continue;
                }
                flush(pending, count, out);
                count = 0;
                out.add(token);
            }
            flush(pending, count, out);
            return out;
        }

        private static int byteOf(String token) {
            if (token.length() != 6 || !token.startsWith("<0x") || token.charAt(5) != '>') {
                return -1;
            }
            try {
                return Integer.parseInt(token.substring(3, 5), 16);
            } catch (NumberFormatException e) {
                return -1;
            }
        }

        private static void flush(byte[] bytes, int count, List<String> out) {
            if (count == 0) {
                return;
            }
            java.nio.charset.CharsetDecoder decoder = java.nio.charset.StandardCharsets.UTF_8.newDecoder();
            try {
                out.add(decoder.decode(java.nio.ByteBuffer.wrap(bytes, 0, count)).toString());
            } catch (java.nio.charset.CharacterCodingException e) {
                for (int i = 0; i < count; i++) {
                    out.add("\uFFFD");
                }
            }
        }
    }

    /** Joins all tokens into one. */
    record Fuse() implements Decoder {
        @Override
        public List<String> decodeChain(List<String> tokens) {
            List<String> out = new ArrayList<>(1);
            out.add(String.join("", tokens));
            return out;
        }
    }

    /** Removes up to {@code start} leading and {@code stop} trailing {@code content} characters of each token. */
    record Strip(int content, int start, int stop) implements Decoder {
        @Override
        public List<String> decodeChain(List<String> tokens) {
            List<String> out = new ArrayList<>(tokens.size());
            for (String token : tokens) {
                int[] cps = token.codePoints().toArray();
                int startCut = 0;
                for (int i = 0; i < Math.min(start, cps.length) && cps[i] == content; i++) {
                    startCut = i + 1;
                }
                int stopCut = cps.length;
                for (int i = 0; i < Math.min(stop, cps.length); i++) {
                    int index = cps.length - i - 1;
                    if (cps[index] != content) {
                        break;
                    }
                    stopCut = index;
                }
                out.add(startCut >= stopCut ? "" : new String(cps, startCut, stopCut - startCut));
            }
            return out;
        }
    }

    /** The classic BPE decoder: the end-of-word suffix becomes a space (none after the last token). */
    record BpeSuffix(String suffix) implements Decoder {
        @Override
        public List<String> decodeChain(List<String> tokens) {
            List<String> out = new ArrayList<>(tokens.size());
            for (int i = 0; i < tokens.size(); i++) {
                out.add(tokens.get(i).replace(suffix, i == tokens.size() - 1 ? "" : " "));
            }
            return out;
        }
    }

    /** The WordPiece decoder: continuation prefixes are removed, other tokens are separated by spaces. */
    record WordPiece(String prefix, boolean cleanup) implements Decoder {
        @Override
        public List<String> decodeChain(List<String> tokens) {
            List<String> out = new ArrayList<>(tokens.size());
            for (int i = 0; i < tokens.size(); i++) {
                String token = tokens.get(i);
                if (i != 0) {
                    token = token.startsWith(prefix) ? token.substring(prefix.length()) : " " + token;
                }
                if (cleanup) {
                    token = token.replace(" .", ".").replace(" ?", "?").replace(" !", "!").replace(" ,", ",")
                            .replace(" ' ", "'").replace(" n't", "n't").replace(" 'm", "'m")
                            .replace(" do not", " don't").replace(" 's", "'s").replace(" 've", "'ve")
                            .replace(" 're", "'re");
                }
                out.add(token);
            }
            return out;
        }
    }
}
