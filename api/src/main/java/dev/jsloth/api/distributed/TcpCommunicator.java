package dev.jsloth.api.distributed;

import dev.jsloth.api.Backend;
import dev.jsloth.api.Tensor;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * The rendezvous of a process group, and collectives over it on host memory: rank 0 listens on
 * {@code MASTER_PORT}, the other ranks connect to {@code MASTER_ADDR:MASTER_PORT} (retrying until the timeout, so
 * start order does not matter) and introduce themselves; all traffic then goes through the root, which sums in
 * rank order, so every rank gets bit-identical results. GPU backends use it only to exchange NCCL's unique id and
 * small host values; for tensors it is the portable fallback (every backend, e.g. data-parallel CPU training):
 * tensors travel as doubles, so F32/BF16 values are summed exactly and rounded once.
 */
public final class TcpCommunicator implements Communicator {
    private static final int MAGIC = 0x4A534C54; // "JSLT"
    /** How long the rendezvous waits for the other ranks unless {@code JSLOTH_RENDEZVOUS_TIMEOUT_S} says otherwise. */
    public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(1800); // torch.distributed's default: ranks may load a large model at different speeds
    /** The environment variable that sets the rendezvous wait, in whole seconds. */
    public static final String TIMEOUT_ENV = "JSLOTH_RENDEZVOUS_TIMEOUT_S";
    /** The file where rank 0 publishes the port it bound when {@code MASTER_PORT} is 0 (the {@code --gpus} launcher's way). */
    public static final String RENDEZVOUS_FILE_ENV = "JSLOTH_RENDEZVOUS_FILE";
    /**
     * Set to {@code address} (the {@code --gpus} launcher does): rank 0 listens on {@code MASTER_ADDR} only, not on every
     * interface, so nothing off this host can join.
     */
    public static final String BIND_ENV = "JSLOTH_RENDEZVOUS_BIND";

    /** The rendezvous wait: {@value #TIMEOUT_ENV} when set (a positive whole number of seconds, else an error naming it), else 30 minutes. */
    public static Duration rendezvousTimeout() {
        return rendezvousTimeout(System.getenv(TIMEOUT_ENV));
    }

    static Duration rendezvousTimeout(String value) {
        if (value == null || value.isBlank()) return DEFAULT_TIMEOUT;
        try {
            long s = Long.parseLong(value.trim());
            if (s > 0) return Duration.ofSeconds(s);
        } catch (NumberFormatException e) {
            // reported below
        }
        throw new IllegalArgumentException(TIMEOUT_ENV + " must be a positive whole number of seconds, got '" + value + "'");
    }

    private final ProcessGroup group;
    private final Backend backend;
    private final Socket[] sockets; // root: by peer rank (0 unused); other ranks: [0] = the root
    private final DataInputStream[] in;
    private final DataOutputStream[] out;
    /** Every exchange runs here, one at a time in call order, so asynchronous reductions overlap the caller's work. */
    private final java.util.concurrent.ExecutorService io = java.util.concurrent.Executors.newSingleThreadExecutor(r -> {
        Thread t = new Thread(r, "jsloth-tcp-collectives");
        t.setDaemon(true);
        return t;
    });

    private TcpCommunicator(ProcessGroup group, Backend backend, Socket[] sockets) throws IOException {
        this.group = group;
        this.backend = backend;
        this.sockets = sockets;
        this.in = new DataInputStream[sockets.length];
        this.out = new DataOutputStream[sockets.length];
        for (int i = 0; i < sockets.length; i++) {
            if (sockets[i] == null) continue;
            in[i] = new DataInputStream(new BufferedInputStream(sockets[i].getInputStream(), 1 << 16));
            out[i] = new DataOutputStream(new BufferedOutputStream(sockets[i].getOutputStream(), 1 << 16));
        }
    }

    /** Connects the group (blocking until every rank has joined, or the timeout). {@code backend} may be null (host values only). */
    public static TcpCommunicator connect(ProcessGroup g, Backend backend, Duration timeout) throws IOException {
        return connect(g, backend, timeout, "tcp/" + (backend == null ? "host" : backend.name()), rendezvousFile());
    }

    /**
     * Connects the group for a {@code transport} (a short name every rank must share, e.g. {@code nccl} or
     * {@code tcp/cpu}: a rank that fell back to another backend is refused by name). With {@code MASTER_PORT} 0 the
     * root binds a free port and publishes it in {@code rendezvousFile}, where the other ranks read it.
     */
    public static TcpCommunicator connect(ProcessGroup g, Backend backend, Duration timeout, String transport, Path rendezvousFile)
            throws IOException {
        if (g.worldSize() == 1) return new TcpCommunicator(g, backend, new Socket[0]);
        if (g.masterPort() == 0 && rendezvousFile == null)
            throw new IllegalArgumentException("MASTER_PORT=0 needs " + RENDEZVOUS_FILE_ENV + " (the file where rank 0 publishes the port it binds)");
        return g.isRoot() ? accept(g, backend, timeout, transport, rendezvousFile) : join(g, backend, timeout, transport, rendezvousFile);
    }

    /** The file named by {@value #RENDEZVOUS_FILE_ENV}, or null. */
    public static Path rendezvousFile() {
        String f = System.getenv(RENDEZVOUS_FILE_ENV);
        return f == null || f.isBlank() ? null : Path.of(f);
    }

    /** What a rank sends first: magic, rank, world size, transport. */
    private record Hello(int magic, int rank, int world, String transport) {
        static Hello read(DataInputStream in) throws IOException {
            int magic = in.readInt();
            if (magic != MAGIC) return new Hello(magic, -1, -1, "");
            int rank = in.readInt(), world = in.readInt(), n = in.readUnsignedShort();
            if (n > MAX_TRANSPORT) throw new IOException("transport name of " + n + " bytes");
            byte[] b = new byte[n];
            in.readFully(b);
            return new Hello(magic, rank, world, new String(b, StandardCharsets.UTF_8));
        }

        void write(DataOutputStream out) throws IOException {
            byte[] b = transport.getBytes(StandardCharsets.UTF_8);
            if (b.length > MAX_TRANSPORT) throw new IllegalArgumentException("transport name too long: " + transport);
            out.writeInt(magic);
            out.writeInt(rank);
            out.writeInt(world);
            out.writeShort(b.length);
            out.write(b);
            out.flush();
        }
    }

    private static final int MAX_TRANSPORT = 64;
    /** How long the root gives one connection to introduce itself before it drops it and listens on. */
    private static final int HELLO_MILLIS = 5_000;

    private static TcpCommunicator accept(ProcessGroup g, Backend backend, Duration timeout, String transport, Path rendezvousFile)
            throws IOException {
        Socket[] peers = new Socket[g.worldSize()];
        long deadline = System.nanoTime() + timeout.toNanos();
        int port = g.masterPort();
        try (ServerSocket server = new ServerSocket()) {
            server.setReuseAddress(true);
            // every interface, as torchrun's store (MASTER_ADDR may name this host by an address other hosts use); only
            // MASTER_ADDR itself where asked (the --gpus launcher, on loopback)
            InetAddress bindTo = "address".equals(System.getenv(BIND_ENV)) ? InetAddress.getByName(g.masterAddr()) : null;
            server.bind(new InetSocketAddress(bindTo, g.masterPort()), g.worldSize());
            port = server.getLocalPort();
            if (g.masterPort() == 0) publishPort(rendezvousFile, port);
            int joined = 0;
            while (joined < g.worldSize() - 1) {
                long left = (deadline - System.nanoTime()) / 1_000_000;
                if (left <= 0) throw timeout(g, joined, port);
                server.setSoTimeout((int) Math.min(Integer.MAX_VALUE, left));
                Socket s;
                try {
                    s = server.accept();
                } catch (SocketTimeoutException e) {
                    throw timeout(g, joined, port);
                }
                Hello h;
                try {
                    s.setTcpNoDelay(true);
                    s.setSoTimeout((int) Math.max(1, Math.min(HELLO_MILLIS, left)));
                    h = Hello.read(new DataInputStream(s.getInputStream()));
                    s.setSoTimeout(0);
                } catch (IOException e) { // a port probe, a half-open or silent connection: not a rank, listen on
                    s.close();
                    continue;
                }
                if (h.magic() != MAGIC) {
                    s.close(); // not one of ours: keep listening
                    continue;
                }
                try {
                    if (h.world() != g.worldSize())
                        throw new IOException("rendezvous: rank " + h.rank() + " says WORLD_SIZE=" + h.world() + ", the root has " + g.worldSize());
                    if (h.rank() <= 0 || h.rank() >= g.worldSize() || peers[h.rank()] != null)
                        throw new IOException("rendezvous: a second process claims RANK=" + h.rank() + " (each rank must be unique, 1.."
                                + (g.worldSize() - 1) + " besides the root)");
                    if (!h.transport().equals(transport))
                        throw new IOException("rendezvous: rank " + h.rank() + " joined for " + h.transport() + " where the root runs " + transport
                                + ": every rank must run the same backend (a rank whose GPU is missing or unusable falls back to another"
                                + " backend: check LOCAL_RANK against the GPUs present, or name --backend)");
                } catch (IOException e) {
                    s.close();
                    throw e;
                }
                peers[h.rank()] = s;
                joined++;
            }
            // everyone is in: each gets its own acknowledgement and answers "ready", so that a rank that gave up
            // meanwhile (its own deadline passed) is an error here, not a wait for ever in the collectives that follow
            for (int r = 1; r < peers.length; r++) {
                try {
                    DataOutputStream o = new DataOutputStream(peers[r].getOutputStream());
                    o.writeInt(MAGIC ^ r);
                    o.flush();
                } catch (IOException e) {
                    throw leftEarly(r, e);
                }
            }
            for (int r = 1; r < peers.length; r++) {
                peers[r].setSoTimeout(READY_MILLIS);
                int ready;
                try {
                    ready = new DataInputStream(peers[r].getInputStream()).readInt();
                } catch (IOException e) {
                    throw leftEarly(r, e);
                }
                peers[r].setSoTimeout(0);
                if (ready != (READY ^ r)) throw new IOException("rendezvous: rank " + r + " answered " + ready + " instead of ready");
            }
        } catch (IOException e) {
            for (Socket s : peers) if (s != null) s.close();
            throw e;
        } finally {
            if (g.masterPort() == 0) Files.deleteIfExists(rendezvousFile); // read by every rank by now, or useless
        }
        return new TcpCommunicator(g, backend, peers);
    }

    private static IOException leftEarly(int rank, IOException e) {
        return new IOException("rendezvous: rank " + rank + " left before the group was complete (its own wait ended: "
                + TIMEOUT_ENV + " sets it; start the ranks within it)", e);
    }

    private static final int READY = 0x52454459; // "REDY"
    private static final int READY_MILLIS = 30_000;

    /** Writes the bound port into the rendezvous file at once (a reader sees no file or the whole number). */
    private static void publishPort(Path file, int port) throws IOException {
        Path dir = file.toAbsolutePath().getParent();
        Path tmp = Files.createTempFile(dir, ".port", ".tmp");
        try {
            Files.writeString(tmp, port + "\n", StandardCharsets.US_ASCII);
            Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    /** The port rank 0 published, waiting for the file until the deadline; -1 if it did not appear. */
    private static int publishedPort(Path file, long deadline) throws IOException {
        while (System.nanoTime() < deadline) {
            if (Files.isRegularFile(file)) {
                String text = Files.readString(file, StandardCharsets.US_ASCII).trim();
                try {
                    int p = Integer.parseInt(text);
                    if (p >= 1 && p <= 65535) return p;
                } catch (NumberFormatException e) {
                    // reported below
                }
                throw new IOException("rendezvous: " + file + " holds '" + text + "', not a TCP port");
            }
            sleep(100);
        }
        return -1;
    }

    private static void sleep(long millis) throws IOException {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException ie) {
            Thread.currentThread().interrupt();
            throw new IOException("rendezvous interrupted", ie);
        }
    }

    private static IOException timeout(ProcessGroup g, int joined, int port) {
        return new IOException("rendezvous: only " + (joined + 1) + " of WORLD_SIZE=" + g.worldSize() + " ranks reached the root on port "
                + port + " within the timeout (start every rank with the same MASTER_ADDR/MASTER_PORT; " + TIMEOUT_ENV + " sets the wait)");
    }

    private static TcpCommunicator join(ProcessGroup g, Backend backend, Duration timeout, String transport, Path rendezvousFile)
            throws IOException {
        long deadline = System.nanoTime() + timeout.toNanos();
        IOException last = null;
        int port = g.masterPort();
        while (System.nanoTime() < deadline) {
            if (g.masterPort() == 0) { // read again after every failed connect: a file left by an earlier run names a dead port
                port = publishedPort(rendezvousFile, deadline);
                if (port < 0) break;
            }
            Socket s = new Socket();
            try {
                s.connect(new InetSocketAddress(g.masterAddr(), port), 2000);
            } catch (IOException e) { // not listening yet, not resolvable yet (a pod coming up), no route yet: try again
                s.close();
                last = e;
                sleep(200);
                continue;
            }
            try {
                s.setTcpNoDelay(true);
                TcpCommunicator c = new TcpCommunicator(g, backend, new Socket[]{s});
                new Hello(MAGIC, g.rank(), g.worldSize(), transport).write(c.out[0]);
                // the root answers once every rank is in: wait for it until the deadline, no longer
                s.setSoTimeout((int) Math.max(1, Math.min(Integer.MAX_VALUE, (deadline - System.nanoTime()) / 1_000_000)));
                int reply;
                try {
                    reply = c.in[0].readInt();
                } catch (SocketTimeoutException e) {
                    throw new IOException("rendezvous: rank " + g.rank() + " reached " + g.masterAddr() + ":" + port
                            + " but not every rank joined within the timeout (" + TIMEOUT_ENV + " sets the wait)", e);
                } catch (java.io.EOFException e) {
                    throw new IOException("rendezvous: rank 0 at " + g.masterAddr() + ":" + port + " closed the connection"
                            + " (its own error says why: another WORLD_SIZE, RANK or backend)", e);
                }
                if (reply != (MAGIC ^ g.rank()))
                    throw new IOException("rendezvous: unexpected reply from " + g.masterAddr() + ":" + port + " (not a jsloth rank 0)");
                c.out[0].writeInt(READY ^ g.rank());
                c.out[0].flush();
                s.setSoTimeout(0);
                return c;
            } catch (IOException e) {
                s.close();
                throw e;
            }
        }
        if (g.masterPort() == 0 && port <= 0)
            throw new IOException("rendezvous: rank " + g.rank() + " found no port from rank 0 in " + rendezvousFile
                    + " within the timeout (is rank 0 running?)");
        throw new IOException("rendezvous: rank " + g.rank() + " could not join the root at " + g.masterAddr() + ":" + port
                + " within the timeout (is rank 0 running? check MASTER_ADDR/MASTER_PORT)" + (last == null ? "" : ": " + last.getMessage()), last);
    }

    @Override
    public ProcessGroup group() {
        return group;
    }

    private static void write(DataOutputStream o, double[] v) throws IOException {
        byte[] bytes = new byte[v.length * 8];
        ByteBuffer.wrap(bytes).asDoubleBuffer().put(v);
        o.writeInt(v.length);
        o.write(bytes);
        o.flush();
    }

    private static double[] read(DataInputStream i, int expected, int from) throws IOException {
        int n = i.readInt();
        if (expected >= 0 && n != expected)
            throw new IOException("rank " + from + " sent " + n + " values where this rank has " + expected + ": the ranks' calls differ");
        byte[] bytes = new byte[n * 8];
        i.readFully(bytes);
        double[] v = new double[n];
        ByteBuffer.wrap(bytes).asDoubleBuffer().get(v);
        return v;
    }

    @Override
    public double[] allReduceSum(double[] values) {
        if (group.worldSize() == 1) return values.clone();
        return awaitIo(io.submit(() -> exchange(values)));
    }

    private static <T> T awaitIo(java.util.concurrent.Future<T> f) {
        try {
            return f.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted during a collective", e);
        } catch (java.util.concurrent.ExecutionException e) {
            if (e.getCause() instanceof RuntimeException r) throw r;
            throw new IllegalStateException(e.getCause());
        }
    }

    /** The sum over the ranks, through the root (on the I/O thread). */
    private double[] exchange(double[] values) {
        try {
            if (group.isRoot()) {
                double[] sum = values.clone();
                for (int r = 1; r < group.worldSize(); r++) {
                    double[] v = read(in[r], values.length, r);
                    for (int i = 0; i < sum.length; i++) sum[i] += v[i];
                }
                for (int r = 1; r < group.worldSize(); r++) write(out[r], sum);
                return sum;
            }
            write(out[0], values);
            return read(in[0], values.length, 0);
        } catch (IOException e) {
            throw new UncheckedIOException("all-reduce over TCP (rank " + group.rank() + " of " + group.worldSize() + ")", e);
        }
    }

    /** The root's bytes on every rank (e.g. NCCL's unique id). */
    public byte[] broadcastBytes(byte[] rootBytes) {
        if (group.worldSize() == 1) return rootBytes.clone();
        try {
            if (group.isRoot()) {
                for (int r = 1; r < group.worldSize(); r++) {
                    out[r].writeInt(rootBytes.length);
                    out[r].write(rootBytes);
                    out[r].flush();
                }
                return rootBytes.clone();
            }
            byte[] b = new byte[in[0].readInt()];
            in[0].readFully(b);
            return b;
        } catch (IOException e) {
            throw new UncheckedIOException("broadcast over TCP (rank " + group.rank() + ")", e);
        }
    }

    private Backend backend() {
        if (backend == null) throw new IllegalStateException("this communicator was made for host values only");
        return backend;
    }

    @Override
    public void allReduceSum(List<Tensor> tensors) {
        allReduceSumAsync(tensors).await();
    }

    /** Host copies taken now, summed over the network on the I/O thread, written back by {@link Pending#await}. */
    @Override
    public Pending allReduceSumAsync(List<Tensor> tensors) {
        if (group.worldSize() == 1 || tensors.isEmpty()) return () -> { };
        Backend be = backend();
        List<double[]> parts = new ArrayList<>();
        int total = 0;
        for (Tensor t : tensors) {
            double[] v = be.download(t);
            parts.add(v);
            total += v.length;
        }
        double[] flat = new double[total];
        int at = 0;
        for (double[] p : parts) {
            System.arraycopy(p, 0, flat, at, p.length);
            at += p.length;
        }
        java.util.concurrent.Future<double[]> reduced = io.submit(() -> exchange(flat));
        return () -> {
            double[] sum = awaitIo(reduced);
            int from = 0;
            for (Tensor t : tensors) {
                int n = Math.toIntExact(t.numel());
                double[] v = java.util.Arrays.copyOfRange(sum, from, from + n);
                from += n;
                try (Tensor tmp = be.upload(t.dtype(), t.shape(), v)) {
                    be.kernels().copy(tmp, t);
                }
            }
        };
    }

    @Override
    public void broadcast(List<Tensor> tensors, int root) {
        if (root != 0) throw new IllegalArgumentException("the TCP communicator broadcasts from rank 0 only, got root " + root);
        if (group.worldSize() == 1 || tensors.isEmpty()) return;
        Backend be = backend();
        for (Tensor t : tensors) {
            double[] mine = group.isRoot() ? be.download(t) : null;
            double[] v = awaitIo(io.submit(() -> {
                try {
                    if (group.isRoot()) {
                        for (int r = 1; r < group.worldSize(); r++) write(out[r], mine);
                        return mine;
                    }
                    return read(in[0], Math.toIntExact(t.numel()), 0);
                } catch (IOException e) {
                    throw new UncheckedIOException("broadcast over TCP (rank " + group.rank() + ")", e);
                }
            }));
            if (!group.isRoot()) {
                try (Tensor tmp = be.upload(t.dtype(), t.shape(), v)) {
                    be.kernels().copy(tmp, t);
                }
            }
        }
    }

    @Override
    public void close() {
        io.shutdownNow();
        for (Socket s : sockets) {
            if (s == null) continue;
            try {
                s.close();
            } catch (IOException ignored) {
                // closing: nothing left to do
            }
        }
    }
}
