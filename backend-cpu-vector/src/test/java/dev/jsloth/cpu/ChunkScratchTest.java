package dev.jsloth.cpu;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@link NormKernels#chunks}' work arrays: kept per thread across calls, and never shared by a call nested in a chunk. */
class ChunkScratchTest {
    @Test
    void aNestedCallGetsArraysOfItsOwn() {
        float[][] outer = new float[1][], inner = new float[1][];
        NormKernels.chunks(100, (start, len, scratch) -> { // one chunk: it runs on this thread
            outer[0] = scratch.floats(0);
            java.util.Arrays.fill(outer[0], 7f);
            NormKernels.chunks(100, (s2, l2, nested) -> {
                inner[0] = nested.floats(0);
                java.util.Arrays.fill(inner[0], -1f);
            });
            for (float v : outer[0]) assertEquals(7f, v, "the nested call wrote into the outer chunk's array");
        });
        assertNotSame(outer[0], inner[0]);
    }

    @Test
    void callsReuseTheirThreadsArrays() {
        Set<float[]> arrays = Collections.newSetFromMap(new IdentityHashMap<>());
        List<Integer> sizes = new ArrayList<>();
        for (int call = 0; call < 20; call++)
            NormKernels.chunks(1 << 20, (start, len, scratch) -> {
                synchronized (arrays) {
                    arrays.add(scratch.floats(0));
                    sizes.add(len);
                }
            });
        // one array per thread that ran chunks, not one per task of every call (20 calls x up to 16 tasks a thread)
        assertTrue(arrays.size() <= Parallel.THREADS + 1, arrays.size() + " arrays for " + Parallel.THREADS + " threads");
        assertEquals(20 * 256, sizes.size());
    }
}
