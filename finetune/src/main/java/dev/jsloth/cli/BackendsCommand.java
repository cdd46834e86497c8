package dev.jsloth.cli;

import dev.jsloth.api.spi.Backends;
import picocli.CommandLine.Command;

/** {@code jsloth backends}: every backend provider found, with its availability and the reason. */
@Command(name = "backends", mixinStandardHelpOptions = true, description = "List the compute backends and whether each can run here.")
final class BackendsCommand implements Runnable {
    @Override
    public void run() {
        String requested = Backends.requestedName();
        String chosen;
        try {
            chosen = Backends.choose(requested, Backends.providers()).name();
        } catch (RuntimeException e) {
            chosen = null;
        }
        for (Backends.Status s : Backends.statuses()) {
            System.out.printf("%-8s priority %3d  %-11s %s%s%n", s.name(), s.priority(),
                    s.availability().available() ? "available" : "unavailable", s.availability().reason(),
                    s.name().equals(chosen) ? "  [selected]" : "");
        }
    }
}
