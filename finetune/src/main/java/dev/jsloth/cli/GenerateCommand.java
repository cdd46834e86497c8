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

    @Option(names = "--prompt-ids", required = true, split = ",", paramLabel = "ID,ID,...", description = "Prompt token ids, comma-separated.")
    int[] promptIds;

    @Option(names = "--max-new-tokens", defaultValue = "32", paramLabel = "N")
    int maxNewTokens;

    @Option(names = "--temperature", defaultValue = "0", description = "0 = greedy (default).")
    double temperature;

    @Option(names = "--top-p", defaultValue = "1.0", description = "Nucleus sampling mass (with temperature > 0).")
    double topP;

    @Option(names = "--seed", defaultValue = "0")
    long seed;

    @Option(names = "--stop-at-eos", description = "Stop at the config's eos_token_id (off by default for id prompts, to give exactly N tokens).")
    boolean stopAtEos;

    @Mixin
    BackendOptions backendOptions;

    @Override
    public Integer call() throws Exception {
        try (Backend be = backendOptions.create(); LlamaModel m = LlamaModel.load(model, be, backendOptions.computeType())) {
            LoraAdapter a = adapter == null ? null : m.loadAdapter(adapter);
            try {
                GenerationOptions o = new GenerationOptions(maxNewTokens, temperature, topP, seed, stopAtEos, m.config().eosTokenId());
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
