package dev.jsloth.cli;

import dev.jsloth.api.distributed.ProcessGroup;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.net.ServerSocket;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

/**
 * {@code --gpus N} on one host: starts N copies of this command, one per GPU, as a data-parallel process group
 * (the torchrun environment: WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR=127.0.0.1, a free MASTER_PORT, and
 * NCCL_NVLS_ENABLE=0), with the same JVM, class path and arguments minus {@code --gpus}. Rank 0's output is this
 * process's; the others print only errors. If one rank fails the others are stopped and its exit status returned.
 * Across hosts, start one process per GPU yourself with that environment (see the README).
 */
final class ProcessLauncher {
    private ProcessLauncher() {
    }

    /** The process group this process belongs to (from the environment), if it was started as a rank. */
    static Optional<ProcessGroup> currentGroup() {
        return ProcessGroup.fromEnvironment();
    }

    /** True when {@code --gpus N} asks for more than one process and this process is not already one of them. */
    static boolean shouldLaunch(Integer gpus) {
        if (gpus == null || gpus <= 1) return false;
        return currentGroup().isEmpty();
    }

    /** Runs {@code gpus} ranks of {@code subcommand args} and waits for them; returns the exit status. */
    static int launch(int gpus, String subcommand, List<String> args) throws IOException, InterruptedException {
        int port;
        try (ServerSocket s = new ServerSocket(0)) {
            port = s.getLocalPort();
        }
        String java = ProcessHandle.current().info().command().orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        List<String> base = new ArrayList<>();
        base.add(java);
        base.addAll(ManagementFactory.getRuntimeMXBean().getInputArguments());
        base.add("-cp");
        base.add(System.getProperty("java.class.path"));
        base.add(Main.class.getName());
        base.add(subcommand);
        base.addAll(withoutGpus(args));
        List<Process> ranks = new java.util.concurrent.CopyOnWriteArrayList<>();
        // a launcher ended by a signal (a scheduler's SIGTERM, Ctrl-C) takes its ranks with it: they would go on holding GPUs
        Thread stopRanks = new Thread(() -> ranks.forEach(Process::destroyForcibly), "jsloth-stop-ranks");
        Runtime.getRuntime().addShutdownHook(stopRanks);
        try {
            for (int r = 0; r < gpus; r++) {
                ProcessBuilder pb = new ProcessBuilder(base);
                Map<String, String> env = pb.environment();
                env.put("WORLD_SIZE", Integer.toString(gpus));
                env.put("RANK", Integer.toString(r));
                env.put("LOCAL_RANK", Integer.toString(r));
                env.put("MASTER_ADDR", "127.0.0.1");
                env.put("MASTER_PORT", Integer.toString(port));
                env.putIfAbsent("NCCL_NVLS_ENABLE", "0");
                if (r == 0) pb.inheritIO();
                else pb.redirectOutput(ProcessBuilder.Redirect.DISCARD).redirectError(ProcessBuilder.Redirect.INHERIT);
                ranks.add(pb.start());
            }
            int status = 0;
            boolean running = true;
            while (running) {
                running = false;
                for (Process p : ranks) {
                    if (p.waitFor(200, TimeUnit.MILLISECONDS)) {
                        if (p.exitValue() != 0 && status == 0) {
                            status = p.exitValue();
                            System.err.println("jsloth: rank " + ranks.indexOf(p) + " exited with status " + status + "; stopping the others");
                            for (Process q : ranks) q.destroy();
                        }
                    } else {
                        running = true;
                    }
                }
            }
            return status;
        } finally {
            for (Process p : ranks) if (p.isAlive()) p.destroyForcibly();
            try {
                Runtime.getRuntime().removeShutdownHook(stopRanks);
            } catch (IllegalStateException shuttingDown) {
                // the hook is running or about to: nothing to remove
            }
        }
    }

    private static List<String> withoutGpus(List<String> args) {
        List<String> out = new ArrayList<>();
        for (int i = 0; i < args.size(); i++) {
            String a = args.get(i);
            if (a.equals("--gpus")) {
                i++;
                continue;
            }
            if (a.startsWith("--gpus=")) continue;
            out.add(a);
        }
        return out;
    }

    private static final class Path {
        static java.nio.file.Path of(String first, String... more) {
            return java.nio.file.Path.of(first, more);
        }
    }
}
