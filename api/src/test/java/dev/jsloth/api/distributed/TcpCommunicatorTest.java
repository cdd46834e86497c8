package dev.jsloth.api.distributed;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.net.ServerSocket;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The process-group environment and the TCP rendezvous/collectives, with ranks as threads of this JVM. */
class TcpCommunicatorTest {
    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    @Test
    void environmentIsReadLikeTorchrunAndBadValuesAreNamed() {
        assertTrue(ProcessGroup.fromEnvironment(Map.of()).isEmpty());
        ProcessGroup g = ProcessGroup.fromEnvironment(Map.of("WORLD_SIZE", "4", "RANK", "2", "MASTER_ADDR", "node0", "MASTER_PORT", "29501")).orElseThrow();
        assertEquals(new ProcessGroup(2, 4, 2, "node0", 29501), g);
        assertEquals(1, ProcessGroup.fromEnvironment(Map.of("WORLD_SIZE", "4", "RANK", "3", "LOCAL_RANK", "1", "MASTER_ADDR", "a",
                "MASTER_PORT", "1")).orElseThrow().localRank());
        assertTrue(assertThrows(IllegalArgumentException.class, () -> ProcessGroup.fromEnvironment(Map.of("WORLD_SIZE", "two", "RANK", "0")))
                .getMessage().contains("WORLD_SIZE=two"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> ProcessGroup.fromEnvironment(Map.of("WORLD_SIZE", "2", "RANK", "2",
                "MASTER_ADDR", "a", "MASTER_PORT", "5"))).getMessage().contains("RANK 2"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> ProcessGroup.fromEnvironment(Map.of("WORLD_SIZE", "2", "RANK", "0",
                "MASTER_PORT", "5"))).getMessage().contains("MASTER_ADDR"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> ProcessGroup.fromEnvironment(Map.of("WORLD_SIZE", "2", "RANK", "0",
                "MASTER_ADDR", "a", "MASTER_PORT", "70000"))).getMessage().contains("MASTER_PORT"));
    }

    @Test
    void threeRanksSumInRankOrderAndAgreeBitForBit() throws Exception {
        int port = freePort(), world = 3;
        ExecutorService ex = Executors.newFixedThreadPool(world);
        try {
            List<Future<double[][]>> results = new ArrayList<>();
            for (int r = world - 1; r >= 0; r--) { // the root starts last: the others wait for it
                final int rank = r;
                results.add(ex.submit(() -> {
                    try (TcpCommunicator c = TcpCommunicator.connect(new ProcessGroup(rank, world, rank, "127.0.0.1", port), null,
                            Duration.ofSeconds(30))) {
                        double[] sum = c.allReduceSum(new double[]{rank + 1, 0.1 * rank, 1e16 * (rank == 0 ? 1 : 0), rank == 2 ? 1 : 0});
                        byte[] id = c.broadcastBytes(rank == 0 ? new byte[]{7, 8, 9} : new byte[0]);
                        c.barrier();
                        return new double[][]{sum, {id.length, id[0], id[2]}};
                    }
                }));
            }
            double[] expected = {6, (0.0 + 0.1) + 0.2, 1e16, 1};
            double[] first = null;
            for (Future<double[][]> f : results) {
                double[][] v = f.get(60, TimeUnit.SECONDS);
                assertArrayEquals(expected, v[0], 0.0);
                assertArrayEquals(new double[]{3, 7, 9}, v[1], 0.0);
                if (first != null) assertArrayEquals(first, v[0], 0.0, "every rank gets the same bits");
                first = v[0];
            }
        } finally {
            ex.shutdownNow();
        }
    }

    @Test
    void mismatchedWorldSizesAndMissingRootAreClearErrors() throws Exception {
        int port = freePort();
        ExecutorService ex = Executors.newFixedThreadPool(2);
        try {
            Future<?> root = ex.submit(() -> TcpCommunicator.connect(new ProcessGroup(0, 2, 0, "127.0.0.1", port), null, Duration.ofSeconds(30)));
            Future<?> other = ex.submit(() -> TcpCommunicator.connect(new ProcessGroup(1, 3, 1, "127.0.0.1", port), null, Duration.ofSeconds(5)));
            var e = assertThrows(java.util.concurrent.ExecutionException.class, () -> root.get(60, TimeUnit.SECONDS));
            assertTrue(e.getCause().getMessage().contains("WORLD_SIZE=3"), e.getCause().getMessage());
            other.cancel(true);
        } finally {
            ex.shutdownNow();
        }
        int unused = freePort();
        IOException e = assertThrows(IOException.class,
                () -> TcpCommunicator.connect(new ProcessGroup(1, 2, 1, "127.0.0.1", unused), null, Duration.ofSeconds(1)));
        assertTrue(e.getMessage().contains("could not join the root at 127.0.0.1:" + unused), e.getMessage());
    }

    /** JSLOTH_RENDEZVOUS_TIMEOUT_S: a positive whole number of seconds, else an error naming it (it fell back to the default silently); the default is torch's 30 minutes. */
    @org.junit.jupiter.api.Test
    void rendezvousTimeoutIsReadExactly() {
        org.junit.jupiter.api.Assertions.assertEquals(java.time.Duration.ofSeconds(1800), TcpCommunicator.rendezvousTimeout((String) null));
        org.junit.jupiter.api.Assertions.assertEquals(java.time.Duration.ofSeconds(45), TcpCommunicator.rendezvousTimeout(" 45 "));
        for (String bad : new String[]{"0", "-5", "5m", "1.5"}) {
            var e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> TcpCommunicator.rendezvousTimeout(bad));
            org.junit.jupiter.api.Assertions.assertTrue(e.getMessage().contains("JSLOTH_RENDEZVOUS_TIMEOUT_S") && e.getMessage().contains("'" + bad + "'"), e.getMessage());
        }
    }

    /**
     * Connections that are not ranks (a port probe that closes at once, bytes that are not a hello, a hello cut short)
     * are dropped and the rendezvous goes on; with MASTER_PORT 0 the root binds a free port and publishes it in the
     * rendezvous file, where the others read it.
     */
    @Test
    void strayConnectionsAreDroppedAndAPublishedPortIsFound(@org.junit.jupiter.api.io.TempDir java.nio.file.Path tmp) throws Exception {
        java.nio.file.Path file = tmp.resolve("port");
        int world = 3;
        ExecutorService ex = Executors.newFixedThreadPool(world);
        try {
            Future<double[]> root = ex.submit(() -> {
                try (TcpCommunicator c = TcpCommunicator.connect(new ProcessGroup(0, world, 0, "127.0.0.1", 0), null, Duration.ofSeconds(60), "test", file)) {
                    return c.allReduceSum(new double[]{1});
                }
            });
            long until = System.nanoTime() + 30_000_000_000L;
            while (!java.nio.file.Files.exists(file) && System.nanoTime() < until) Thread.sleep(20);
            int port = Integer.parseInt(java.nio.file.Files.readString(file).trim());
            try (java.net.Socket probe = new java.net.Socket("127.0.0.1", port)) { // connects and closes
                assertTrue(probe.isConnected());
            }
            try (java.net.Socket junk = new java.net.Socket("127.0.0.1", port)) {
                junk.getOutputStream().write("GET / HTTP/1.0\r\n\r\n".getBytes(java.nio.charset.StandardCharsets.US_ASCII));
                junk.getOutputStream().flush();
            }
            try (java.net.Socket cut = new java.net.Socket("127.0.0.1", port)) { // our magic, then nothing more
                new java.io.DataOutputStream(cut.getOutputStream()).writeInt(0x4A534C54);
            }
            List<Future<double[]>> others = new ArrayList<>();
            for (int r = 1; r < world; r++) {
                final int rank = r;
                others.add(ex.submit(() -> {
                    try (TcpCommunicator c = TcpCommunicator.connect(new ProcessGroup(rank, world, rank, "127.0.0.1", 0), null, Duration.ofSeconds(60), "test", file)) {
                        return c.allReduceSum(new double[]{rank + 1});
                    }
                }));
            }
            assertArrayEquals(new double[]{6}, root.get(90, TimeUnit.SECONDS), 0.0);
            for (Future<double[]> f : others) assertArrayEquals(new double[]{6}, f.get(90, TimeUnit.SECONDS), 0.0);
        } finally {
            ex.shutdownNow();
        }
        assertEquals(0, ProcessGroup.fromEnvironment(Map.of("WORLD_SIZE", "2", "RANK", "1", "MASTER_ADDR", "127.0.0.1",
                TcpCommunicator.RENDEZVOUS_FILE_ENV, file.toString())).orElseThrow().masterPort());
        assertTrue(assertThrows(IllegalArgumentException.class, () -> TcpCommunicator.connect(new ProcessGroup(1, 2, 1, "127.0.0.1", 0), null,
                Duration.ofSeconds(1), "test", null)).getMessage().contains(TcpCommunicator.RENDEZVOUS_FILE_ENV));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> ProcessGroup.fromEnvironment(Map.of("WORLD_SIZE", "2", "RANK", "1",
                "MASTER_ADDR", "a", "MASTER_PORT", "0"))).getMessage().contains(TcpCommunicator.RENDEZVOUS_FILE_ENV));
        assertTrue(!java.nio.file.Files.exists(file), "rank 0 deletes the rendezvous file once every rank has joined");
    }

    /**
     * A rank that joins for another transport (one whose GPU was missing fell back to the CPU backend) is refused by
     * name at the root, and the rank itself hears that the root closed the connection.
     */
    @Test
    void aRankOnAnotherBackendIsRefusedByName() throws Exception {
        int port = freePort();
        ExecutorService ex = Executors.newFixedThreadPool(2);
        try {
            Future<?> root = ex.submit(() -> TcpCommunicator.connect(new ProcessGroup(0, 2, 0, "127.0.0.1", port), null, Duration.ofSeconds(30), "nccl", null));
            Future<?> other = ex.submit(() -> TcpCommunicator.connect(new ProcessGroup(1, 2, 1, "127.0.0.1", port), null, Duration.ofSeconds(30), "tcp/cpu", null));
            var e = assertThrows(java.util.concurrent.ExecutionException.class, () -> root.get(60, TimeUnit.SECONDS));
            assertTrue(e.getCause().getMessage().contains("rank 1 joined for tcp/cpu where the root runs nccl"), e.getCause().getMessage());
            var o = assertThrows(java.util.concurrent.ExecutionException.class, () -> other.get(60, TimeUnit.SECONDS));
            assertTrue(o.getCause().getMessage().contains("closed the connection"), o.getCause().getMessage());
        } finally {
            ex.shutdownNow();
        }
    }

    /** abortOnFailure aborts (not closes) the communicator when the work throws, and passes the exception on. */
    @Test
    void aFailureAbortsTheCommunicator() throws Exception {
        List<String> calls = new ArrayList<>();
        Communicator c = new Communicator() {
            public ProcessGroup group() { return ProcessGroup.single(); }
            public void allReduceSum(List<dev.jsloth.api.Tensor> tensors) { }
            public double[] allReduceSum(double[] values) { return values; }
            public void broadcast(List<dev.jsloth.api.Tensor> tensors, int root) { }
            public void abort() { calls.add("abort"); }
            public void close() { calls.add("close"); }
        };
        assertEquals(5, c.abortOnFailure(() -> 5));
        assertEquals(List.of(), calls);
        IOException e = assertThrows(IOException.class, () -> c.abortOnFailure(() -> { throw new IOException("disk full"); }));
        assertEquals("disk full", e.getMessage());
        assertEquals(List.of("abort"), calls);
    }

    /**
     * A rank whose own wait ends before the group is complete leaves; rank 0 then reports it (the ready round trip)
     * rather than going on to collectives that would wait for it for ever.
     */
    @Test
    void aRankThatGaveUpIsReportedByTheRoot() throws Exception {
        int port = freePort();
        ExecutorService ex = Executors.newFixedThreadPool(3);
        try {
            Future<?> root = ex.submit(() -> TcpCommunicator.connect(new ProcessGroup(0, 3, 0, "127.0.0.1", port), null, Duration.ofSeconds(60), "t", null));
            Future<?> early = ex.submit(() -> TcpCommunicator.connect(new ProcessGroup(1, 3, 1, "127.0.0.1", port), null, Duration.ofSeconds(2), "t", null));
            var e1 = assertThrows(java.util.concurrent.ExecutionException.class, () -> early.get(60, TimeUnit.SECONDS));
            assertTrue(e1.getCause().getMessage().contains("not every rank joined"), e1.getCause().getMessage());
            Future<?> late = ex.submit(() -> {
                try (TcpCommunicator c = TcpCommunicator.connect(new ProcessGroup(2, 3, 2, "127.0.0.1", port), null, Duration.ofSeconds(60), "t", null)) {
                    return null;
                }
            });
            var e0 = assertThrows(java.util.concurrent.ExecutionException.class, () -> root.get(90, TimeUnit.SECONDS));
            assertTrue(e0.getCause().getMessage().contains("rank 1 left before the group was complete"), e0.getCause().getMessage());
            try {
                late.get(60, TimeUnit.SECONDS);
            } catch (java.util.concurrent.ExecutionException ignored) {
                // rank 2 may have been released before rank 0 saw rank 1 gone: its first collective would then fail
            }
        } finally {
            ex.shutdownNow();
        }
    }
}
