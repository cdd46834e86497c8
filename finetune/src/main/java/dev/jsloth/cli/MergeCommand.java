package dev.jsloth.cli;

import dev.jsloth.api.Backend;
import dev.jsloth.api.spi.Backends;
import dev.jsloth.model.Merge;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.concurrent.Callable;

/** {@code jsloth merge}: fold an adapter into the base weights. */
@Command(name = "merge", mixinStandardHelpOptions = true,
        description = "Fold a LoRA adapter into the base weights (W + s*B*A in float64, rounded once) and write a checkpoint transformers loads.")
final class MergeCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, paramLabel = "DIR")
    Path model;

    @Option(names = "--adapter", required = true, paramLabel = "DIR")
    Path adapter;

    @Option(names = "--out", required = true, paramLabel = "DIR")
    Path out;

    @Override
    public Integer call() throws Exception {
        try (Backend be = Backends.create("cpu")) {
            Merge.merge(model, adapter, out, be);
        }
        System.out.println("merged checkpoint written to " + out.toAbsolutePath());
        return 0;
    }
}
