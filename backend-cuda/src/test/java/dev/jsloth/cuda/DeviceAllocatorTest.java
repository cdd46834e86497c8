package dev.jsloth.cuda;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The caching allocator's size classes, reuse and out-of-memory retry, against a fake driver. */
class DeviceAllocatorTest {
    /** Hands out increasing fake addresses; can be told to run out of memory. */
    static final class FakeSource implements DeviceAllocator.Source {
        long next = 1L << 20;
        long capacity = Long.MAX_VALUE;
        long held;
        int allocations, frees, syncs;
        final java.util.Map<Long, Long> live = new java.util.HashMap<>();

        @Override
        public long allocate(long bytes) {
            if (held + bytes > capacity) throw new CudaException("cuMemAlloc failed: CUDA_ERROR_OUT_OF_MEMORY (2)", 2);
            allocations++;
            held += bytes;
            long p = next;
            next += bytes + 4096;
            live.put(p, bytes);
            return p;
        }

        @Override
        public void free(long pointer) {
            Long bytes = live.remove(pointer);
            assertTrue(bytes != null, "double free of " + pointer);
            held -= bytes;
            frees++;
        }

        @Override
        public void synchronize() {
            syncs++;
        }
    }

    @Test
    void sizeClasses() {
        assertEquals(512, DeviceAllocator.sizeClass(1));
        assertEquals(512, DeviceAllocator.sizeClass(512));
        assertEquals(1024, DeviceAllocator.sizeClass(513));
        assertEquals(1 << 20, DeviceAllocator.sizeClass((1 << 19) + 1));
        assertEquals(1 << 20, DeviceAllocator.sizeClass(1 << 20));
        assertEquals(2L << 20, DeviceAllocator.sizeClass((1 << 20) + 1));
        assertEquals(6L << 20, DeviceAllocator.sizeClass((4L << 20) + 1));
        assertThrows(IllegalArgumentException.class, () -> DeviceAllocator.sizeClass(-1));
    }

    @Test
    void releasedBlocksAreReusedWithoutNewDriverAllocations() {
        FakeSource src = new FakeSource();
        DeviceAllocator a = new DeviceAllocator(src);
        for (int step = 0; step < 10; step++) {
            List<DeviceAllocator.Block> blocks = new ArrayList<>();
            for (long size : new long[]{100, 4000, 70_000, 3_000_000, 3_000_000, 50_000_000}) blocks.add(a.allocate(size));
            for (DeviceAllocator.Block b : blocks) a.release(b);
        }
        assertEquals(6, src.allocations, "only the first step allocates from the driver");
        assertEquals(a.reservedBytes(), a.cachedBytes());
    }

    @Test
    void largeRequestsTakeASlightlyLargerCachedBlock() {
        FakeSource src = new FakeSource();
        DeviceAllocator a = new DeviceAllocator(src);
        DeviceAllocator.Block big = a.allocate(64L << 20);
        a.release(big);
        DeviceAllocator.Block smaller = a.allocate(60L << 20);
        assertEquals(big.pointer(), smaller.pointer());
        assertEquals(big.size(), smaller.size());
        a.release(smaller);
        DeviceAllocator.Block tooSmall = a.allocate(20L << 20); // 64 MiB is more than 1/8 over: a new block
        assertTrue(tooSmall.pointer() != big.pointer());
    }

    @Test
    void outOfMemoryReturnsTheCacheAndRetriesOnce() {
        FakeSource src = new FakeSource();
        src.capacity = 10L << 20;
        DeviceAllocator a = new DeviceAllocator(src);
        a.release(a.allocate(6L << 20));
        DeviceAllocator.Block b = a.allocate(8L << 20); // does not fit beside the cached 6 MiB
        assertEquals(8L << 20, b.size());
        assertEquals(1, src.frees);
        assertEquals(1, src.syncs, "synchronized before giving memory back");
        assertEquals(8L << 20, a.reservedBytes());
        CudaException e = assertThrows(CudaException.class, () -> a.allocate(8L << 20));
        assertEquals(2, e.code());
    }

    @Test
    void zeroBytesNeedNoMemory() {
        FakeSource src = new FakeSource();
        DeviceAllocator a = new DeviceAllocator(src);
        DeviceAllocator.Block b = a.allocate(0);
        assertEquals(0, b.pointer());
        a.release(b);
        assertEquals(0, src.allocations);
        assertEquals(0, a.cachedBytes());
    }
}
