package dev.jsloth.cpu;

import org.junit.jupiter.api.Test;

import java.util.concurrent.atomic.AtomicIntegerArray;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** The threading strategy: every item once, chunks as chunkCount says, failures rethrown, nested calls, fixed sums. */
class ParallelTest {
    @Test
    void everyItemRunsOnceInTheAnnouncedChunks() {
        for (int n : new int[]{1, 2, 3, 7, 13, 64, 207, 4098}) {
            for (int minChunk : new int[]{1, 3, 16, 5000}) {
                AtomicIntegerArray seen = new AtomicIntegerArray(n);
                AtomicIntegerArray chunks = new AtomicIntegerArray(Math.max(1, Parallel.chunkCount(n, minChunk)));
                Parallel.forChunks(n, minChunk, (c, lo, hi) -> {
                    chunks.incrementAndGet(c);
                    for (int i = lo; i < hi; i++) seen.incrementAndGet(i);
                });
                for (int i = 0; i < n; i++) assertEquals(1, seen.get(i), "item " + i + " of " + n + ", minChunk " + minChunk);
                for (int c = 0; c < chunks.length(); c++) assertEquals(1, chunks.get(c), "chunk " + c + " of " + n);
            }
        }
    }

    @Test
    void aFailingChunkIsRethrownToTheCaller() {
        IllegalStateException boom = new IllegalStateException("chunk failed");
        IllegalStateException thrown = assertThrows(IllegalStateException.class, () -> Parallel.forRange(100, 1, (lo, hi) -> {
            if (lo <= 50 && 50 < hi) throw boom;
        }));
        assertSame(boom, thrown);
        Parallel.forRange(100, 1, (lo, hi) -> { }); // the pool is still usable
    }

    @Test
    void nestedCallsFinish() {
        AtomicIntegerArray seen = new AtomicIntegerArray(64 * 64);
        Parallel.forRange(64, 1, (lo, hi) -> {
            for (int i = lo; i < hi; i++) {
                int row = i;
                Parallel.forRange(64, 1, (a, b) -> {
                    for (int j = a; j < b; j++) seen.incrementAndGet(row * 64 + j);
                });
            }
        });
        for (int i = 0; i < seen.length(); i++) assertEquals(1, seen.get(i));
    }

    @Test
    void sumsAddPartialsInChunkOrder() {
        int n = 10_007;
        double[] x = new double[n];
        for (int i = 0; i < n; i++) x[i] = Math.sin(i) * 1e-3 * (i % 7 + 1);
        double[] once = Parallel.sum(n, 16, 1, (lo, hi, acc) -> {
            for (int i = lo; i < hi; i++) acc[0] += x[i];
        });
        for (int round = 0; round < 20; round++)
            assertArrayEquals(once, Parallel.sum(n, 16, 1, (lo, hi, acc) -> {
                for (int i = lo; i < hi; i++) acc[0] += x[i];
            }), 0.0);
    }
}
