package dev.jsloth.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code jsloth} command line: a thin layer over the Java API. */
@Command(name = "jsloth", mixinStandardHelpOptions = true, version = "jsloth 0.1.0",
        description = "Fast LoRA and QLoRA fine-tuning of Llama-family models on the JVM.",
        subcommands = {BackendsCommand.class})
public final class Main implements Runnable {
    public static void main(String[] args) {
        int code = new CommandLine(new Main()).setCaseInsensitiveEnumValuesAllowed(true).execute(args);
        System.exit(code);
    }

    @Override
    public void run() {
        new CommandLine(this).usage(System.out);
    }
}
