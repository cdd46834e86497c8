package dev.jsloth.cpu;

import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** The block cache's reuse by size, its eviction of the least recently used sizes at the cap, and its fills. */
class BlockCacheTest {

    @Test
    void reusesBySizeAndEvictsTheLeastRecentlyUsedSizesAtTheCap() {
        BlockCache cache = new BlockCache(3 * 4096);
        MemorySegment a = cache.take(4096, true), b = cache.take(2048, true), c = cache.take(4096, true);
        cache.give(a);
        cache.give(b);
        assertEquals(4096 + 2048, cache.cachedBytes());
        assertEquals(a.address(), cache.take(4096, true).address(), "a released block of the size comes back");
        cache.give(a); // the 4096 size is now the most recently used, 2048 the least
        cache.give(c);
        assertEquals(4096 + 2048 + 4096, cache.cachedBytes());
        MemorySegment d = cache.take(8192, true);
        cache.give(d); // needs 8192 under a 12288 cap: the 2048 block goes first, then one 4096 block
        assertEquals(8192 + 4096, cache.cachedBytes());
        assertEquals(d.address(), cache.take(8192, true).address());
        assertEquals(4096, cache.cachedBytes());
        cache.give(cache.take(4 * 4096, true)); // larger than the cap: freed at once
        assertEquals(4096, cache.cachedBytes());
        cache.give(d);
        cache.shutDown();
        assertEquals(0, cache.cachedBytes());
        cache.give(cache.take(64, true)); // after shutdown nothing is kept
        assertEquals(0, cache.cachedBytes());
    }

    /** allocate's blocks are zero, fresh or reused; allocateForOverwrite's are NaN bytes under the poison setting. */
    @Test
    void zeroesOrPoisonsWhatItHandsOut() {
        BlockCache cache = new BlockCache(1 << 24);
        for (long bytes : new long[]{100, 3 << 20}) { // below and above the parallel-zeroing size
            MemorySegment s = cache.take(bytes, true);
            assertAll(s, (byte) 0);
            s.fill((byte) 7);
            cache.give(s);
            MemorySegment z = cache.take(bytes, true);
            assertEquals(s.address(), z.address());
            assertAll(z, (byte) 0);
            cache.give(z);
            MemorySegment o = cache.take(bytes, false);
            if (Boolean.getBoolean("jsloth.cpu.poison")) assertAll(o, (byte) -1);
            cache.give(o);
            MemorySegment fresh = cache.take(bytes + 64, false);
            if (Boolean.getBoolean("jsloth.cpu.poison")) assertAll(fresh, (byte) -1);
            cache.give(fresh);
        }
        cache.shutDown();
    }

    private static void assertAll(MemorySegment s, byte want) {
        for (long i = 0; i < s.byteSize(); i++)
            if (s.get(ValueLayout.JAVA_BYTE, i) != want) assertEquals(want, s.get(ValueLayout.JAVA_BYTE, i), "byte " + i);
    }
}
