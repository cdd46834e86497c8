package dev.jsloth.cli;

import dev.jsloth.api.distributed.ProcessGroup;
import dev.jsloth.api.distributed.TcpCommunicator;
import dev.jsloth.api.spi.BackendProvider;
import dev.jsloth.api.spi.Backends;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

/**
 * {@code --gpus N} on one host: starts N copies of this command, one per GPU, as a data-parallel process group
 * (the torchrun environment: WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR=127.0.0.1, MASTER_PORT=0 with
 * JSLOTH_RENDEZVOUS_FILE where rank 0 publishes the port it binds, and NCCL_NVLS_ENABLE=0), with the same JVM, class path and arguments minus {@code --gpus}. Rank 0's output is this
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

    /**
     * Checks, before any rank starts, that the backend the ranks will pick has {@code gpus} devices: with fewer, the
     * extra ranks would find no GPU and fall back to the CPU backend. The CPU backend runs only when named
     * ({@code --backend cpu}), not as the fallback of a host without a usable GPU; a backend that does not count its
     * devices (OpenCL) is not checked.
     */
    static void checkDevices(int gpus, String backendOption) {
        String named = backendOption != null ? backendOption : Backends.requestedName();
        List<BackendProvider> providers = Backends.providers();
        BackendProvider p = Backends.choose(named, providers);
        java.util.OptionalInt count = p.deviceCount();
        if (count.isPresent() && gpus > count.getAsInt())
            throw new IllegalArgumentException("--gpus " + gpus + " starts one process a GPU, but the " + p.name() + " backend sees "
                    + count.getAsInt() + " device" + (count.getAsInt() == 1 ? "" : "s") + " on this host"
                    + (System.getenv("CUDA_VISIBLE_DEVICES") == null ? "" : " (CUDA_VISIBLE_DEVICES=" + System.getenv("CUDA_VISIBLE_DEVICES") + ")"));
        if (count.isEmpty() && named == null && p.name().equals("cpu")) { // the CPU as the fallback of a host without a GPU
            StringBuilder why = new StringBuilder();
            for (Backends.Status st : Backends.statuses(providers))
                if (!st.availability().available()) why.append("; ").append(st.name()).append(": ").append(st.availability().reason());
            throw new IllegalArgumentException("--gpus " + gpus + ": no GPU backend is usable here, the best available is " + p.name() + why
                    + " (to run " + gpus + " processes on it anyway, name it: --backend " + p.name() + ")");
        }
    }

    /** Runs {@code gpus} ranks of {@code subcommand args} and waits for them; returns the exit status. */
    static int launch(int gpus, String subcommand, List<String> args, String backendOption) throws IOException, InterruptedException {
        checkDevices(gpus, backendOption);
        // rank 0 binds a free port when it gets there and publishes it in this file (MASTER_PORT=0): a port chosen
        // here could be taken by then
        var rendezvousDir = Files.createTempDirectory("jsloth-rendezvous");
        var rendezvousFile = rendezvousDir.resolve("port");
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
                env.put("MASTER_PORT", "0");
                env.put(TcpCommunicator.RENDEZVOUS_FILE_ENV, rendezvousFile.toString());
                env.put(TcpCommunicator.BIND_ENV, "address"); // rank 0 listens on 127.0.0.1 only
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
            Files.deleteIfExists(rendezvousFile);
            Files.deleteIfExists(rendezvousDir);
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
