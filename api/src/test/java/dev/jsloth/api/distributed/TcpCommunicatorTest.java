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

    /** JSLOTH_RENDEZVOUS_TIMEOUT_S: a positive whole number of seconds, else an error naming it (it fell back to 300 s silently). */
    @org.junit.jupiter.api.Test
    void rendezvousTimeoutIsReadExactly() {
        org.junit.jupiter.api.Assertions.assertEquals(java.time.Duration.ofSeconds(300), TcpCommunicator.rendezvousTimeout((String) null));
        org.junit.jupiter.api.Assertions.assertEquals(java.time.Duration.ofSeconds(45), TcpCommunicator.rendezvousTimeout(" 45 "));
        for (String bad : new String[]{"0", "-5", "5m", "1.5"}) {
            var e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> TcpCommunicator.rendezvousTimeout(bad));
            org.junit.jupiter.api.Assertions.assertTrue(e.getMessage().contains("JSLOTH_RENDEZVOUS_TIMEOUT_S") && e.getMessage().contains("'" + bad + "'"), e.getMessage());
        }
    }
}
