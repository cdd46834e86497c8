package dev.jsloth.data;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Test-only tokenizer built like the placeholder: each UTF-8 byte is its own id (0..255), and special tokens written
 * in the text (longest first) are single ids from 256 up, as a real tokenizer splits on added tokens. With a BOS id,
 * {@code addSpecialTokens} prepends it, like a Llama post-processor; without one (Qwen-style) it adds nothing.
 */
final class ByteTokenizer implements ExampleBuilder.Encoder {
    static final String[] SPECIALS = {"<s>", "</s>", "<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>",
            "<|end_header_id|>", "<|im_start|>", "<|im_end|>", "<|user|>", "<|assistant|>", "<|system|>"};

    private final Map<String, Integer> specials = new LinkedHashMap<>();
    private final int bosId;

    /** @param bos the BOS token text that {@code addSpecialTokens} prepends, or null for none */
    ByteTokenizer(String bos) {
        for (int i = 0; i < SPECIALS.length; i++) specials.put(SPECIALS[i], 256 + i);
        this.bosId = bos == null ? -1 : id(bos);
    }

    int id(String special) {
        Integer id = specials.get(special);
        if (id == null) throw new IllegalArgumentException(special);
        return id;
    }

    @Override
    public int[] encode(String text, boolean addSpecialTokens) {
        List<Integer> ids = new ArrayList<>();
        if (addSpecialTokens && bosId >= 0) ids.add(bosId);
        int i = 0;
        StringBuilder plain = new StringBuilder();
        while (i < text.length()) {
            String match = null;
            for (String s : specials.keySet())
                if (text.startsWith(s, i) && (match == null || s.length() > match.length())) match = s;
            if (match == null) {
                plain.append(text.charAt(i++));
                continue;
            }
            for (byte b : plain.toString().getBytes(StandardCharsets.UTF_8)) ids.add(b & 0xff);
            plain.setLength(0);
            ids.add(specials.get(match));
            i += match.length();
        }
        for (byte b : plain.toString().getBytes(StandardCharsets.UTF_8)) ids.add(b & 0xff);
        return ids.stream().mapToInt(Integer::intValue).toArray();
    }

    String decode(int[] ids, int from, int to) {
        StringBuilder out = new StringBuilder();
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        for (int k = from; k < to; k++) {
            int id = ids[k];
            if (id < 256) {
                bytes.write(id);
                continue;
            }
            out.append(bytes.toString(StandardCharsets.UTF_8));
            bytes.reset();
            out.append(SPECIALS[id - 256]);
        }
        return out.append(bytes.toString(StandardCharsets.UTF_8)).toString();
    }

    String decode(int[] ids) {
        return decode(ids, 0, ids.length);
    }

    /** The text of each maximal run of trained positions (label != IGNORE), in order. */
    List<String> trainedRuns(Example e) {
        List<String> runs = new ArrayList<>();
        int k = 0;
        while (k < e.length()) {
            if (e.labels()[k] == Example.IGNORE) {
                k++;
                continue;
            }
            int start = k;
            while (k < e.length() && e.labels()[k] != Example.IGNORE) k++;
            runs.add(decode(e.inputIds(), start, k));
        }
        return runs;
    }
}
