package dev.jsloth.cli;

import dev.jsloth.api.Backend;
import dev.jsloth.model.GenerationOptions;
import dev.jsloth.model.LlamaModel;
import dev.jsloth.model.LoraAdapter;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code jsloth generate}: continue a prompt with a KV cache, greedy or sampled. */
@Command(name = "generate", mixinStandardHelpOptions = true,
        description = "Generate tokens after a prompt. With --prompt-ids prints one JSON line with the new \"ids\".")
final class GenerateCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, paramLabel = "DIR")
    Path model;

    @Option(names = "--adapter", paramLabel = "DIR", description = "PEFT LoRA adapter directory.")
    Path adapter;

    @Option(names = "--prompt-ids", split = ",", paramLabel = "ID,ID,...", description = "Prompt token ids, comma-separated (prints JSON ids).")
    int[] promptIds;

    @Option(names = "--prompt", paramLabel = "TEXT", description = "Text prompt: tokenized with the model's tokenizer; the reply streams as text.")
    String prompt;

    @Option(names = "--chat", description = "With --prompt: wrap it as a user turn in the model's chat template (default: raw text).")
    boolean chat;

    @Option(names = "--template", paramLabel = "NAME", description = "With --chat: a built-in template instead of the model's own.")
    String template;

    @Option(names = "--max-new-tokens", defaultValue = "32", paramLabel = "N")
    int maxNewTokens;

    @Option(names = "--temperature", defaultValue = "0", description = "0 = greedy (default).")
    double temperature;

    @Option(names = "--top-p", defaultValue = "1.0", description = "Nucleus sampling mass (with temperature > 0).")
    double topP;

    @Option(names = "--top-k", defaultValue = "50", paramLabel = "K", description = "With temperature > 0: sample among the K most "
            + "likely tokens (ties kept), before --top-p; 0 = off. Default ${DEFAULT-VALUE}, as transformers' GenerationConfig.")
    int topK;

    @Option(names = "--seed", defaultValue = "0")
    long seed;

    @Option(names = "--stop-at-eos", description = "Stop at any eos_token_id of config.json and generation_config.json (off by default "
            + "for id prompts, to give exactly N tokens).")
    boolean stopAtEos;

    @Mixin
    BackendOptions backendOptions;

    /** Text in, text out, printed token by token as it is generated; stops at end of sequence or turn. */
    private void generateText(LlamaModel m) throws Exception {
        dev.jsloth.tokenizer.Tokenizer tok = dev.jsloth.tokenizer.Tokenizer.load(model);
        int[] ids;
        if (chat) {
            dev.jsloth.data.ChatTemplate tpl = dev.jsloth.train.FineTuneJob.template(model, template);
            String text = tpl.render(java.util.List.of(new dev.jsloth.data.Message("user", prompt)), true);
            ids = dev.jsloth.data.ExampleBuilder.encodeRendered(tok, text); // one BOS, where the template writes its own
        } else {
            ids = tok.encode(prompt, true);
        }
        int[] stops = dev.jsloth.train.FineTuneJob.stopTokens(m, tok, chat);
        java.util.List<Integer> produced = new java.util.ArrayList<>();
        int[] printed = {0};
        m.generate(ids, options(stops), token -> {
            produced.add(token);
            String all = tok.decode(produced.stream().mapToInt(Integer::intValue).toArray(), true);
            if (all.length() > printed[0] && !all.endsWith("\uFFFD")) { // hold back incomplete UTF-8 sequences
                System.out.print(all.substring(printed[0]));
                System.out.flush();
                printed[0] = all.length();
            }
        });
        // what was held back (generation ended inside a multi-byte character), as transformers' TextStreamer.end() prints it
        String all = tok.decode(produced.stream().mapToInt(Integer::intValue).toArray(), true);
        if (all.length() > printed[0]) System.out.print(all.substring(printed[0]));
        System.out.println();
    }

    /** The options as given, each bad value reported with its flag. */
    private GenerationOptions options(int[] stops) {
        if (maxNewTokens < 0) throw new IllegalArgumentException("--max-new-tokens must be >= 0, got " + maxNewTokens);
        if (!(temperature >= 0) || Double.isInfinite(temperature))
            throw new IllegalArgumentException("--temperature must be a finite number >= 0 (0: greedy), got " + temperature);
        if (!(topP > 0 && topP <= 1)) throw new IllegalArgumentException("--top-p must be in (0, 1], got " + topP);
        if (topK < 0) throw new IllegalArgumentException("--top-k must be >= 0 (0: off), got " + topK);
        return new GenerationOptions(maxNewTokens, temperature, topP, topK, seed, stops);
    }

    @Override
    public Integer call() throws Exception {
        if ((promptIds == null) == (prompt == null)) throw new IllegalArgumentException("give exactly one of --prompt-ids or --prompt");
        try (Backend be = backendOptions.create(); LlamaModel m = LlamaModel.load(model, be, backendOptions.computeType())) {
            LoraAdapter a = adapter == null ? null : m.loadAdapter(adapter);
            try {
                if (prompt != null) {
                    generateText(m);
                    return 0;
                }
                // every eos id of config.json and generation_config.json (Llama 3.1 lists three)
                int[] stops = stopAtEos ? dev.jsloth.model.LlamaConfig.eosTokenIds(model).stream().mapToInt(Integer::intValue).toArray() : new int[0];
                GenerationOptions o = options(stops);
                int[] ids = m.generate(promptIds, o, null);
                Map<String, Object> out = new LinkedHashMap<>();
                out.put("ids", Arrays.stream(ids).boxed().toList());
                JsonLine.print(out);
            } finally {
                if (a != null) a.close();
            }
        }
        return 0;
    }
}
