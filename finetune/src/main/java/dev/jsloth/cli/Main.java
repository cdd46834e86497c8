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
            cmd.getErr().println(rankPrefix() + "jsloth " + cmd.getCommandName() + ": error: " + describe(e));
            return 1;
        });
        return cl;
    }

    /** The message of an error and of the errors under it that add something (an I/O wrapper's EOF, a peer's reset). */
    static String describe(Throwable e) {
        StringBuilder sb = new StringBuilder(message(e));
        java.util.Set<Throwable> seen = java.util.Collections.newSetFromMap(new java.util.IdentityHashMap<>());
        seen.add(e);
        for (Throwable c = e.getCause(); c != null && seen.add(c) && seen.size() <= 4; c = c.getCause()) {
            String m = message(c);
            if (!sb.toString().contains(m)) sb.append(": ").append(m);
        }
        return sb.toString();
    }

    private static String message(Throwable e) {
        return e instanceof java.nio.file.NoSuchFileException nf ? "no such file: " + nf.getFile()
                : e.getMessage() == null ? e.toString() : e.getMessage();
    }

    /** "[rank 1] " in a process group of several ranks, where every rank's errors reach one terminal. */
    private static String rankPrefix() {
        return dev.jsloth.api.distributed.ProcessGroup.fromEnvironmentOrEmpty()
                .filter(g -> g.worldSize() > 1).map(g -> "[rank " + g.rank() + "] ").orElse("");
    }

    @Override
    public void run() {
        new CommandLine(this).usage(System.out);
    }
}
