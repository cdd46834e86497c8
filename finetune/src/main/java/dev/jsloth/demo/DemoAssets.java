package dev.jsloth.demo;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.jsloth.io.AtomicFiles;
import dev.jsloth.io.Json;
import dev.jsloth.io.SafeTensorsWriter;
import dev.jsloth.io.TensorBytes;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;

/**
 * The built-in demo: a tiny Llama-architecture model generated deterministically (fixed seed; random normal
 * weights scaled so that a frozen random base still lets LoRA express confident predictions: unit-variance
 * embeddings, output head std 0.2, projections std 0.08), a byte-level BPE tokenizer whose merges make every demo
 * word one token, with ChatML special tokens, and a small instruction
 * dataset (country capitals) that LoRA learns in a few dozen steps, written as an ordinary checkpoint directory
 * and JSONL file so the demo runs exactly the code path of a real fine-tune.
 */
public final class DemoAssets {
    public static final int HIDDEN = 128, INTERMEDIATE = 344, LAYERS = 4, HEADS = 4, KV_HEADS = 2;
    public static final String BOS = "<|begin_of_text|>", EOS = "<|end_of_text|>", IM_START = "<|im_start|>", IM_END = "<|im_end|>";
    static final long SEED = 20260101L;
    static final String VERSION = "3";

    /** Country, capital pairs: the demo's facts. */
    static final String[][] CAPITALS = {
            {"France", "Paris"}, {"Germany", "Berlin"}, {"Italy", "Rome"}, {"Spain", "Madrid"}, {"Portugal", "Lisbon"},
            {"Japan", "Tokyo"}, {"Canada", "Ottawa"}, {"Egypt", "Cairo"}, {"Kenya", "Nairobi"}, {"Peru", "Lima"},
            {"Chile", "Santiago"}, {"Norway", "Oslo"}, {"Sweden", "Stockholm"}, {"Poland", "Warsaw"}, {"Greece", "Athens"},
            {"Austria", "Vienna"}, {"Ireland", "Dublin"}, {"Cuba", "Havana"}, {"India", "New Delhi"}, {"China", "Beijing"},
            {"Russia", "Moscow"}, {"Turkey", "Ankara"}, {"Iran", "Tehran"}, {"Mexico", "Mexico City"}, {"Brazil", "Brasilia"},
    };

    private DemoAssets() {
    }

    /** The user turn of the demo prompt for a country. */
    public static String question(String country) {
        return "What is the capital of " + country + "?";
    }

    /** Writes (once; reused when present and current) the model directory and dataset under {@code root}. */
    public static Path ensure(Path root) throws IOException {
        Path model = root.resolve("model");
        Path stamp = model.resolve(".jsloth-demo-version");
        if (Files.isRegularFile(stamp) && Files.readString(stamp).equals(VERSION)) return root;
        Files.createDirectories(model);
        writeTokenizer(model);
        writeConfig(model);
        writeWeights(model);
        writeDataset(root.resolve("capitals.jsonl"));
        AtomicFiles.write(stamp, VERSION.getBytes(StandardCharsets.UTF_8));
        return root;
    }

    public static Path modelDir(Path root) {
        return root.resolve("model");
    }

    public static Path dataset(Path root) {
        return root.resolve("capitals.jsonl");
    }

    /** Bytes 0..255, one merged token per demo word (built by merges), then the four special tokens. */
    static int vocabSize() {
        return 256 + wordMerges().size() + 4;
    }

    static int specialId(int i) {
        return 256 + wordMerges().size() + i;
    }

    /** Every word of the demo's texts, in byte-level symbols with GPT-2's space marker, made one token by merges. */
    static java.util.List<String[]> wordMerges() {
        java.util.LinkedHashSet<String> words = new java.util.LinkedHashSet<>();
        java.util.List<String> texts = new java.util.ArrayList<>(java.util.List.of("user", "assistant", "What is the capital of", "The capital of"));
        for (String[] c : CAPITALS) {
            texts.add(question(c[0]));
            texts.add("The capital of " + c[0] + " is " + c[1] + ".");
        }
        for (String t : texts) {
            String[] parts = t.split("(?=[ ?.])|(?<=[?.])");
            for (String p : parts) if (p.length() > 1) words.add(p.replace(' ', '\u0120'));
        }
        java.util.List<String[]> merges = new java.util.ArrayList<>();
        java.util.Set<String> made = new java.util.HashSet<>();
        for (String w : words) {
            String prefix = w.substring(0, 1);
            for (int i = 1; i < w.length(); i++) {
                String next = prefix + w.charAt(i);
                if (made.add(next)) merges.add(new String[]{prefix, String.valueOf(w.charAt(i))});
                prefix = next;
            }
        }
        return merges;
    }

    private static void writeConfig(Path dir) throws IOException {
        ObjectNode c = Json.MAPPER.createObjectNode();
        c.putArray("architectures").add("LlamaForCausalLM");
        c.put("model_type", "llama");
        c.put("hidden_size", HIDDEN);
        c.put("intermediate_size", INTERMEDIATE);
        c.put("num_hidden_layers", LAYERS);
        c.put("num_attention_heads", HEADS);
        c.put("num_key_value_heads", KV_HEADS);
        c.put("head_dim", HIDDEN / HEADS);
        c.put("vocab_size", vocabSize());
        c.put("max_position_embeddings", 512);
        c.put("rms_norm_eps", 1e-5);
        c.put("hidden_act", "silu");
        c.put("tie_word_embeddings", false);
        c.put("attention_bias", false);
        c.put("mlp_bias", false);
        c.put("bos_token_id", specialId(0));
        c.put("eos_token_id", specialId(1));
        c.put("dtype", "float32");
        ObjectNode rope = c.putObject("rope_parameters");
        rope.put("rope_theta", 10000.0);
        rope.put("rope_type", "default");
        Json.write(dir.resolve("config.json"), c);
    }

    /** GPT-2's byte-to-unicode table: printable bytes map to themselves, the rest to U+0100 onwards. */
    static String[] byteSymbols() {
        String[] sym = new String[256];
        int extra = 0;
        for (int b = 0; b < 256; b++) {
            boolean printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            sym[b] = printable ? String.valueOf((char) b) : String.valueOf((char) (256 + extra++));
        }
        return sym;
    }

    private static void writeTokenizer(Path dir) throws IOException {
        ObjectNode t = Json.MAPPER.createObjectNode();
        t.put("version", "1.0");
        t.putNull("truncation");
        t.putNull("padding");
        ArrayNode added = t.putArray("added_tokens");
        String[] specials = {BOS, EOS, IM_START, IM_END};
        for (int i = 0; i < specials.length; i++) {
            ObjectNode a = added.addObject();
            a.put("id", specialId(i)).put("content", specials[i]).put("single_word", false).put("lstrip", false)
                    .put("rstrip", false).put("normalized", false).put("special", true);
        }
        t.putNull("normalizer");
        ObjectNode pre = t.putObject("pre_tokenizer");
        pre.put("type", "ByteLevel").put("add_prefix_space", false).put("trim_offsets", true).put("use_regex", true);
        ObjectNode post = t.putObject("post_processor");
        post.put("type", "TemplateProcessing");
        ArrayNode single = post.putArray("single");
        single.addObject().putObject("SpecialToken").put("id", BOS).put("type_id", 0);
        single.addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
        ArrayNode pair = post.putArray("pair");
        pair.addObject().putObject("SpecialToken").put("id", BOS).put("type_id", 0);
        pair.addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
        pair.addObject().putObject("Sequence").put("id", "B").put("type_id", 1);
        ObjectNode st = post.putObject("special_tokens").putObject(BOS);
        st.put("id", BOS);
        st.putArray("ids").add(specialId(0));
        st.putArray("tokens").add(BOS);
        ObjectNode dec = t.putObject("decoder");
        dec.put("type", "ByteLevel").put("add_prefix_space", true).put("trim_offsets", true).put("use_regex", true);
        ObjectNode model = t.putObject("model");
        model.put("type", "BPE").putNull("dropout").putNull("unk_token").putNull("continuing_subword_prefix")
                .putNull("end_of_word_suffix").put("fuse_unk", false).put("byte_fallback", false).put("ignore_merges", false);
        ObjectNode vocab = model.putObject("vocab");
        String[] sym = byteSymbols();
        for (int b = 0; b < 256; b++) vocab.put(sym[b], b);
        ArrayNode merges = model.putArray("merges");
        int next = 256;
        for (String[] m : wordMerges()) {
            vocab.put(m[0] + m[1], next++);
            merges.add(m[0] + " " + m[1]);
        }
        Json.write(dir.resolve("tokenizer.json"), t);

        ObjectNode tc = Json.MAPPER.createObjectNode();
        tc.put("bos_token", BOS);
        tc.put("eos_token", EOS);
        tc.put("pad_token", EOS);
        tc.put("chat_template", "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
                + "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}");
        Json.write(dir.resolve("tokenizer_config.json"), tc);
    }

    private static void writeWeights(Path dir) throws IOException {
        SplittableRandom rnd = new SplittableRandom(SEED);
        SafeTensorsWriter w = new SafeTensorsWriter().metadata("format", "pt");
        int v = vocabSize(), d = HIDDEN, hd = HIDDEN / HEADS;
        try (Arena arena = Arena.ofConfined()) {
            w.add("model.embed_tokens.weight", "F32", new int[]{v, d}, TensorBytes.encode("F32", normal(rnd, v * d, 1.0), arena));
            for (int l = 0; l < LAYERS; l++) {
                String p = "model.layers." + l + ".";
                w.add(p + "input_layernorm.weight", "F32", new int[]{d}, TensorBytes.encode("F32", ones(d), arena));
                w.add(p + "self_attn.q_proj.weight", "F32", new int[]{HEADS * hd, d}, TensorBytes.encode("F32", normal(rnd, HEADS * hd * d, PROJ_STD), arena));
                w.add(p + "self_attn.k_proj.weight", "F32", new int[]{KV_HEADS * hd, d}, TensorBytes.encode("F32", normal(rnd, KV_HEADS * hd * d, PROJ_STD), arena));
                w.add(p + "self_attn.v_proj.weight", "F32", new int[]{KV_HEADS * hd, d}, TensorBytes.encode("F32", normal(rnd, KV_HEADS * hd * d, PROJ_STD), arena));
                w.add(p + "self_attn.o_proj.weight", "F32", new int[]{d, HEADS * hd}, TensorBytes.encode("F32", normal(rnd, d * HEADS * hd, PROJ_STD), arena));
                w.add(p + "post_attention_layernorm.weight", "F32", new int[]{d}, TensorBytes.encode("F32", ones(d), arena));
                w.add(p + "mlp.gate_proj.weight", "F32", new int[]{INTERMEDIATE, d}, TensorBytes.encode("F32", normal(rnd, INTERMEDIATE * d, PROJ_STD), arena));
                w.add(p + "mlp.up_proj.weight", "F32", new int[]{INTERMEDIATE, d}, TensorBytes.encode("F32", normal(rnd, INTERMEDIATE * d, PROJ_STD), arena));
                w.add(p + "mlp.down_proj.weight", "F32", new int[]{d, INTERMEDIATE}, TensorBytes.encode("F32", normal(rnd, d * INTERMEDIATE, PROJ_STD), arena));
            }
            w.add("model.norm.weight", "F32", new int[]{d}, TensorBytes.encode("F32", ones(d), arena));
            w.add("lm_head.weight", "F32", new int[]{v, d}, TensorBytes.encode("F32", normal(rnd, v * d, 0.2), arena));
            w.write(dir.resolve("model.safetensors"));
        }
    }

    private static final double PROJ_STD = 0.08;

    private static double[] normal(SplittableRandom r, int n, double std) {
        double[] x = new double[n];
        for (int i = 0; i < n; i += 2) {
            double u1 = 1 - r.nextDouble(), u2 = r.nextDouble();
            double mag = std * Math.sqrt(-2 * Math.log(u1));
            x[i] = mag * Math.cos(2 * Math.PI * u2);
            if (i + 1 < n) x[i + 1] = mag * Math.sin(2 * Math.PI * u2);
        }
        return x;
    }

    private static double[] ones(int n) {
        double[] x = new double[n];
        java.util.Arrays.fill(x, 1.0);
        return x;
    }

    private static void writeDataset(Path file) throws IOException {
        StringBuilder sb = new StringBuilder();
        for (String[] c : CAPITALS) {
            ObjectNode row = Json.MAPPER.createObjectNode();
            ArrayNode msgs = row.putArray("messages");
            msgs.addObject().put("role", "user").put("content", question(c[0]));
            msgs.addObject().put("role", "assistant").put("content", "The capital of " + c[0] + " is " + c[1] + ".");
            sb.append(new com.fasterxml.jackson.databind.ObjectMapper().writeValueAsString(row)).append('\n');
        }
        AtomicFiles.write(file, sb.toString().getBytes(StandardCharsets.UTF_8));
    }
}
