package dev.jsloth.cpu;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** No native memory leaks across create/close cycles; closed tensors are refused, not read. */
class CpuBackendLifecycleTest {

    static long rssKiB() throws Exception {
        for (String line : Files.readAllLines(Path.of("/proc/self/status")))
            if (line.startsWith("VmRSS:")) return Long.parseLong(line.replaceAll("\\D", ""));
        return -1;
    }

    @Test
    void thousandCyclesOfTensorsAndBackendsLeakNothing() throws Exception {
        // warm up allocator and JIT, then measure
        cycle(50);
        System.gc();
        long before = rssKiB();
        cycle(1000);
        System.gc();
        long after = rssKiB();
        System.out.printf("[lifecycle] 1000 backend cycles x 20 tensors (~4 MiB each cycle): RSS %d KiB -> %d KiB%n", before, after);
        // 1000 cycles allocate ~4 GiB in total; a leak of even one cycle's tensors per 10 cycles would add > 400 MiB
        assertTrue(before < 0 || after - before < 64 * 1024, "RSS grew by " + (after - before) + " KiB");
    }

    private static void cycle(int n) {
        for (int i = 0; i < n; i++) {
            CpuBackend be = new CpuBackend();
            for (int t = 0; t < 20; t++) {
                Tensor x = be.allocate(t % 2 == 0 ? DType.F32 : DType.BF16, Shape.of(1024, 64 + t));
                if (t % 3 == 0) x.close(); // some closed explicitly, the rest by the backend
            }
            assertTrue(be.memoryStats().liveBytes() > 0);
            be.close();
            assertEquals(0, be.memoryStats().liveBytes());
            assertEquals(0, be.memoryStats().liveTensors());
        }
    }

    /**
     * Released memory is handed out again for the same size: zeroed for {@code allocate} (a small block, and one above
     * the parallel-zeroing size), and for {@code allocateForOverwrite} left unspecified, which the test suite's
     * {@code jsloth.cpu.poison} setting makes NaN; nothing is counted live while cached.
     */
    @Test
    void reusedBlocksAreZeroedOrPoisoned() {
        try (CpuBackend be = new CpuBackend()) {
            for (Shape shape : new Shape[]{Shape.of(3, 5), Shape.of(1024, 300)}) {
                Tensor x = be.allocate(DType.F32, shape);
                long address = be.seg(x).address();
                double[] ones = new double[Math.toIntExact(shape.numel())];
                java.util.Arrays.fill(ones, 1.0);
                Tensor src = be.upload(DType.F32, shape, ones);
                be.kernels().copy(src, x);
                x.close();
                long liveWithSource = be.memoryStats().liveBytes();
                assertEquals(4 * shape.numel(), liveWithSource, "a released block is not counted live");
                Tensor y = be.allocate(DType.F32, shape);
                assertEquals(address, be.seg(y).address(), "the released block is reused");
                for (double v : be.download(y)) assertEquals(0.0, v);
                be.kernels().copy(src, y);
                y.close();
                Tensor z = be.allocateForOverwrite(DType.F32, shape);
                assertEquals(address, be.seg(z).address(), "the released block is reused");
                if (Boolean.getBoolean("jsloth.cpu.poison")) for (double v : be.download(z)) assertTrue(Double.isNaN(v));
                z.close();
                src.close();
            }
        }
    }

    @Test
    void closedTensorsAndViewsAreRefused() {
        try (Backend be = new CpuBackend()) {
            Tensor t = be.allocate(DType.F32, 4, 4);
            Tensor v = t.rows(1, 2);
            t.close();
            assertThrows(IllegalStateException.class, () -> be.download(t));
            assertThrows(IllegalStateException.class, () -> be.download(v));
            assertEquals(0, be.memoryStats().liveBytes());
        }
    }

    @Test
    void outOfMemoryNamesTheSizeAndWhatToChange() {
        try (Backend be = new CpuBackend()) {
            var e = assertThrows(dev.jsloth.api.DeviceOutOfMemoryException.class, () -> be.allocate(DType.F32, 1 << 24, 1 << 24));
            assertTrue(e.getMessage().contains("1.0 PiB") && e.getMessage().contains("--batch-size") && e.getMessage().contains("--qlora"), e.getMessage());
            assertEquals(0, be.memoryStats().liveBytes());
        }
    }
}
