package dev.jsloth.cli;

import dev.jsloth.model.Quantize;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;

/** {@code jsloth quantize}: write a bitsandbytes NF4 checkpoint. */
@Command(name = "quantize", mixinStandardHelpOptions = true,
        description = "Quantize the projection weights to NF4 (bitsandbytes layout, loadable by transformers) and write a checkpoint.")
final class QuantizeCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, paramLabel = "DIR")
    Path model;

    @Option(names = "--out", required = true, paramLabel = "DIR")
    Path out;

    @Option(names = "--double-quant", defaultValue = "true", arity = "1", paramLabel = "true|false",
            description = "Quantize the block scales too (default: ${DEFAULT-VALUE}).")
    boolean doubleQuant;

    @Override
    public Integer call() throws Exception {
        Quantize.Report r = Quantize.quantize(model, out, doubleQuant);
        System.out.printf(Locale.ROOT, "quantized %d weights to NF4%s: %.1f MiB -> %.1f MiB; written to %s%n", r.quantized(),
                doubleQuant ? " (double quantization)" : "", r.bytesBefore() / 1048576.0, r.bytesAfter() / 1048576.0, out.toAbsolutePath());
        return 0;
    }
}
