package dev.jsloth.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code jsloth} command line: a thin layer over the Java API. */
@Command(name = "jsloth", mixinStandardHelpOptions = true, version = "jsloth 0.1.0",
        description = "Fast LoRA and QLoRA fine-tuning of Llama-family models on the JVM.",
        subcommands = {BackendsCommand.class, LossCommand.class, GenerateCommand.class, MergeCommand.class, BenchCommand.class, QuantizeCommand.class, FinetuneCommand.class, TokenizeCommand.class})
public final class Main implements Runnable {
    public static void main(String[] args) {
        System.exit(commandLine().execute(args));
    }

    /** The configured command line; errors from commands print as one clear line (stack trace with -Djsloth.debug). */
    static CommandLine commandLine() {
        CommandLine cl = new CommandLine(new Main()).setCaseInsensitiveEnumValuesAllowed(true);
        cl.setExecutionExceptionHandler((e, cmd, parsed) -> {
            if (Boolean.getBoolean("jsloth.debug")) e.printStackTrace();
            String msg = e instanceof java.nio.file.NoSuchFileException nf ? "no such file: " + nf.getFile()
                    : e.getMessage() == null ? e.toString() : e.getMessage();
            cmd.getErr().println("jsloth " + cmd.getCommandName() + ": error: " + msg);
            return 1;
        });
        return cl;
    }

    @Override
    public void run() {
        new CommandLine(this).usage(System.out);
    }
}
