// PLACEHOLDER: replaced by the real tokenizer on merge
package dev.jsloth.tokenizer;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.OptionalInt;

/**
 * PLACEHOLDER for the real tokenizer, which is developed on another branch and replaces this file on merge.
 *
 * <p>It has exactly the public members of the real class. It is a trivial byte-level tokenizer: every UTF-8 byte is
 * its own id (0..255), and the special tokens {@code <s>} (256, BOS) and {@code </s>} (257, EOS) are recognised
 * when they appear literally in the text. {@code addSpecialTokens} prepends BOS, like a Llama post-processor.
 */
public final class Tokenizer {
    private static final String BOS = "<s>";
    private static final String EOS = "</s>";
    private static final int BOS_ID = 256;
    private static final int EOS_ID = 257;

    private Tokenizer() {
    }

    /** Loads a tokenizer from a {@code tokenizer.json} file or a directory that contains one. */
    public static Tokenizer load(Path path) throws IOException {
        Path file = Files.isDirectory(path) ? path.resolve("tokenizer.json") : path;
        if (!Files.isRegularFile(file)) throw new IOException(file + ": no such tokenizer file");
        return new Tokenizer();
    }

    /** Encodes text; special tokens written in the text are recognised, and {@code addSpecialTokens} prepends BOS. */
    public int[] encode(String text, boolean addSpecialTokens) {
        java.util.List<Integer> ids = new java.util.ArrayList<>();
        if (addSpecialTokens) ids.add(BOS_ID);
        int i = 0;
        while (i < text.length()) {
            int special = text.startsWith(BOS, i) ? BOS_ID : text.startsWith(EOS, i) ? EOS_ID : -1;
            if (special < 0) {
                int next = i;
                while (next < text.length() && !text.startsWith(BOS, next) && !text.startsWith(EOS, next)) next++;
                for (byte b : text.substring(i, next).getBytes(StandardCharsets.UTF_8)) ids.add(b & 0xff);
                i = next;
            } else {
                ids.add(special);
                i += special == BOS_ID ? BOS.length() : EOS.length();
            }
        }
        return ids.stream().mapToInt(Integer::intValue).toArray();
    }

    /** Decodes ids to text; special tokens are dropped when {@code skipSpecialTokens}. */
    public String decode(int[] ids, boolean skipSpecialTokens) {
        StringBuilder out = new StringBuilder();
        ByteArrayOutputStream pending = new ByteArrayOutputStream();
        for (int id : ids) {
            if (id < 256) {
                pending.write(id);
                continue;
            }
            out.append(pending.toString(StandardCharsets.UTF_8));
            pending.reset();
            if (!skipSpecialTokens) out.append(idToToken(id));
        }
        return out.append(pending.toString(StandardCharsets.UTF_8)).toString();
    }

    public int vocabSize() {
        return 258;
    }

    public OptionalInt tokenToId(String token) {
        if (BOS.equals(token)) return OptionalInt.of(BOS_ID);
        if (EOS.equals(token)) return OptionalInt.of(EOS_ID);
        if (token.length() == 1 && token.charAt(0) < 256) return OptionalInt.of(token.charAt(0));
        return OptionalInt.empty();
    }

    public String idToToken(int id) {
        if (id == BOS_ID) return BOS;
        if (id == EOS_ID) return EOS;
        if (id >= 0 && id < 256) return String.valueOf((char) id);
        throw new IllegalArgumentException("token id " + id + " is outside the vocabulary of " + vocabSize());
    }

    public boolean isSpecial(int id) {
        return id == BOS_ID || id == EOS_ID;
    }
}
