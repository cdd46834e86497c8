package dev.jsloth.tokenizer;

import java.util.ArrayList;
import java.util.List;

/**
 * GPT-2's byte-level scheme: every byte of the UTF-8 text is shown as one printable character
 * ({@code ' '} becomes {@code 'Ġ'}, {@code '\n'} becomes {@code 'Ċ'}), so a BPE vocabulary over those
 * characters covers any input without unknown tokens.
 *
 * <p>This class holds the byte/character tables and the pre-tokenizer, normalizer and decoder
 * steps of tokenizers' {@code ByteLevel} component.
 */
final class ByteLevel {
    /** GPT-2's default split regex, used when {@code use_regex} is true. */
    static final String GPT2_REGEX =
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

    private static final char[] BYTE_TO_CHAR = new char[256];
    private static final int[] CHAR_TO_BYTE = new int[324];
    private static final TextPattern GPT2 = TextPattern.regex(GPT2_REGEX);
    /** The byte characters of the 128 ASCII bytes (one UTF-8 byte each). */
    private static final char[] ASCII_TO_CHAR = new char[128];

    static {
        java.util.Arrays.fill(CHAR_TO_BYTE, -1);
        int n = 0;
        for (int b = 0; b < 256; b++) {
            boolean printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            char c = printable ? (char) b : (char) (256 + n++);
            BYTE_TO_CHAR[b] = c;
            CHAR_TO_BYTE[c] = b;
        }
        System.arraycopy(BYTE_TO_CHAR, 0, ASCII_TO_CHAR, 0, 128);
    }

    private ByteLevel() {}

    /** The character standing for byte {@code b} (0..255). */
    static char byteChar(int b) {
        return BYTE_TO_CHAR[b & 0xFF];
    }

    /** The byte a character stands for, or -1 if it is not one of the 256 byte characters. */
    static int charByte(int c) {
        return c >= 0 && c < CHAR_TO_BYTE.length ? CHAR_TO_BYTE[c] : -1;
    }

    /** The byte-level form of one code point: one character per UTF-8 byte. */
    static String encodeCodePoint(int cp) {
        if (cp < 0x80) {
            return String.valueOf(BYTE_TO_CHAR[cp]);
        }
        byte[] bytes = new String(Character.toChars(cp)).getBytes(java.nio.charset.StandardCharsets.UTF_8);
        char[] out = new char[bytes.length];
        for (int i = 0; i < bytes.length; i++) {
            out[i] = BYTE_TO_CHAR[bytes[i] & 0xFF];
        }
        return new String(out);
    }

    /** Replaces every character of {@code ns} by the byte characters of its UTF-8 form. */
    static void toByteChars(NormalizedString ns) {
        if (!ns.mapCharsIfAllBelow(ASCII_TO_CHAR)) {
            ns.mapCodePoints(ByteLevel::encodeCodePoint);
        }
    }

    /** The {@code ByteLevel} pre-tokenizer. */
    record PreTokenizer(boolean addPrefixSpace, boolean useRegex) implements PreTokenizers.PreTokenizer {
        static PreTokenizer parse(Json json) throws TokenizerFormatException {
            json.bool("trim_offsets", true);
            return new PreTokenizer(json.bool("add_prefix_space", true), json.bool("use_regex", true));
        }

        @Override
        public void preTokenize(PreTokenizedString pts) {
            pts.split(ns -> {
                if (addPrefixSpace && !ns.get().startsWith(" ")) {
                    ns.prepend(" ");
                }
                return useRegex ? ns.split(GPT2, SplitBehavior.ISOLATED) : List.of(ns);
            });
            pts.normalize(ByteLevel::toByteChars);
        }
    }

    /**
     * The {@code ByteLevel} decoder: turns byte characters back into bytes and decodes the whole
     * sequence as UTF-8 (invalid sequences become U+FFFD). A token with a character outside the byte
     * alphabet (an added token such as {@code "<|eot_id|>"} written with spaces) contributes its own
     * UTF-8 bytes.
     */
    static List<String> decode(List<String> tokens) {
        byte[] buf = new byte[64];
        int len = 0;
        for (String token : tokens) {
            byte[] bytes = tokenBytes(token);
            if (len + bytes.length > buf.length) {
                buf = java.util.Arrays.copyOf(buf, Math.max(buf.length * 2, len + bytes.length));
            }
            System.arraycopy(bytes, 0, buf, len, bytes.length);
            len += bytes.length;
        }
        List<String> out = new ArrayList<>(1);
        out.add(UnicodeText.decodeUtf8Lossy(buf, len));
        return out;
    }

    private static byte[] tokenBytes(String token) {
        byte[] bytes = new byte[token.length()];
        for (int i = 0; i < token.length(); i++) {
            int b = charByte(token.charAt(i));
            if (b < 0) {
                return UnicodeText.utf8(token);
            }
            bytes[i] = (byte) b;
        }
        return bytes;
    }
}
