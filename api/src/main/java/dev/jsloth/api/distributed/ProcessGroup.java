package dev.jsloth.api.distributed;

import java.util.Map;
import java.util.Optional;

/**
 * Where this process sits in a data-parallel job, from the usual launcher environment (torchrun's names):
 * {@code WORLD_SIZE} processes, this one {@code RANK} (0 = the root, which writes checkpoints), {@code LOCAL_RANK}
 * (its GPU on this host; defaults to RANK), and the root's rendezvous address {@code MASTER_ADDR:MASTER_PORT}. A port
 * of 0 (or none, with {@code JSLOTH_RENDEZVOUS_FILE} set) means rank 0 binds a free port and publishes it in that file,
 * as the {@code --gpus} launcher does: no port is chosen before it is bound.
 */
public record ProcessGroup(int rank, int worldSize, int localRank, String masterAddr, int masterPort) {
    public ProcessGroup {
        if (worldSize < 1) throw new IllegalArgumentException("WORLD_SIZE must be at least 1, got " + worldSize);
        if (rank < 0 || rank >= worldSize) throw new IllegalArgumentException("RANK " + rank + " is outside [0, WORLD_SIZE=" + worldSize + ")");
        if (localRank < 0) throw new IllegalArgumentException("LOCAL_RANK must not be negative, got " + localRank);
        if (masterAddr == null || masterAddr.isBlank()) throw new IllegalArgumentException("MASTER_ADDR is empty");
        if (masterPort < 0 || masterPort > 65535)
            throw new IllegalArgumentException("MASTER_PORT " + masterPort + " is not a TCP port (1-65535, or 0: rank 0 binds a free one and publishes it in "
                    + TcpCommunicator.RENDEZVOUS_FILE_ENV + ")");
    }

    /** A group of one process (no communication). */
    public static ProcessGroup single() {
        return new ProcessGroup(0, 1, 0, "127.0.0.1", 29500);
    }

    public boolean isRoot() {
        return rank == 0;
    }

    /** The group this process's environment describes, or empty when {@code WORLD_SIZE} is not set. */
    public static Optional<ProcessGroup> fromEnvironment() {
        return fromEnvironment(System.getenv());
    }

    /** As {@link #fromEnvironment()}, empty also where the environment is malformed (for messages, not for running). */
    public static Optional<ProcessGroup> fromEnvironmentOrEmpty() {
        try {
            return fromEnvironment();
        } catch (IllegalArgumentException e) {
            return Optional.empty();
        }
    }

    public static Optional<ProcessGroup> fromEnvironment(Map<String, String> env) {
        String ws = env.get("WORLD_SIZE");
        if (ws == null || ws.isBlank()) return Optional.empty();
        int world = number(env, "WORLD_SIZE");
        int rank = number(env, "RANK");
        int local = env.containsKey("LOCAL_RANK") ? number(env, "LOCAL_RANK") : rank;
        String addr = env.get("MASTER_ADDR");
        if (addr == null && world == 1) addr = "127.0.0.1";
        if (addr == null) throw new IllegalArgumentException("WORLD_SIZE=" + world + " but MASTER_ADDR is not set (the root's host name or address)");
        boolean published = env.get(TcpCommunicator.RENDEZVOUS_FILE_ENV) != null && !env.get(TcpCommunicator.RENDEZVOUS_FILE_ENV).isBlank();
        int port = env.containsKey("MASTER_PORT") ? number(env, "MASTER_PORT") : published ? 0 : world > 1 ? number(env, "MASTER_PORT") : 29500;
        if (port == 0 && !published && world > 1) // refused here, before a model is loaded, not at the rendezvous
            throw new IllegalArgumentException("MASTER_PORT=0 needs " + TcpCommunicator.RENDEZVOUS_FILE_ENV + " (the file where rank 0 publishes the port it binds)");
        return Optional.of(new ProcessGroup(rank, world, local, addr, port));
    }

    private static int number(Map<String, String> env, String name) {
        String v = env.get(name);
        if (v == null) throw new IllegalArgumentException("WORLD_SIZE is set but " + name + " is not");
        try {
            return Integer.parseInt(v.trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(name + "=" + v + " is not an integer");
        }
    }
}
