package dev.jsloth.cuda;

import java.util.ArrayDeque;
import java.util.Map;
import java.util.TreeMap;

/**
 * A caching allocator of device memory. Requests are rounded up to a size class (powers of two from 512 B to
 * 1 MiB, then multiples of 2 MiB); released blocks go to a free list per class and are handed out again, so a
 * training loop that allocates the same shapes step after step stops calling {@code cuMemAlloc} after its first
 * step. A large request may take a cached block up to 1/8 larger. Reuse is safe without events because all work
 * is queued on one stream, in order. When the driver runs out of memory, the cache is returned to it (after a
 * synchronize) and the allocation retried once.
 */
final class DeviceAllocator {
    static final long MIN_BLOCK = 512;
    static final long SMALL_LIMIT = 1L << 20;
    static final long LARGE_GRANULE = 2L << 20;

    /** Where blocks come from: the driver in the backend, a fake in tests. */
    interface Source {
        long allocate(long bytes);

        void free(long pointer);

        /** Waits for queued work, before memory it may still use goes back to the driver. */
        void synchronize();
    }

    /** A block of device memory: its address and its (size-class) length. */
    record Block(long pointer, long size) {
    }

    private final Source source;
    private final TreeMap<Long, ArrayDeque<Long>> free = new TreeMap<>();
    private long reservedBytes;
    private long cachedBytes;

    DeviceAllocator(Source source) {
        this.source = source;
    }

    /** The size class of a request of {@code bytes}. */
    static long sizeClass(long bytes) {
        if (bytes < 0) throw new IllegalArgumentException("negative allocation " + bytes);
        if (bytes <= MIN_BLOCK) return MIN_BLOCK;
        if (bytes <= SMALL_LIMIT) return Long.highestOneBit(bytes - 1) << 1;
        return Math.ceilDiv(bytes, LARGE_GRANULE) * LARGE_GRANULE;
    }

    /**
     * {@link #allocate(long)}, with running out of device memory reported as a {@link dev.jsloth.api.DeviceOutOfMemoryException}
     * naming {@code device} and {@code what} (the tensors' live bytes beside it, as the user sees them).
     */
    Block allocate(long bytes, String device, long liveBytes, String what) {
        try {
            return allocate(bytes);
        } catch (CudaException e) {
            if (e.code() != CudaDriver.ERROR_OUT_OF_MEMORY) throw e;
            throw new dev.jsloth.api.DeviceOutOfMemoryException(device, bytes, liveBytes, what);
        }
    }

    /** A block of at least {@code bytes}; a zero-byte request gets the null block. */
    synchronized Block allocate(long bytes) {
        if (bytes == 0) return new Block(0, 0);
        long size = sizeClass(bytes);
        Long reuse = size <= SMALL_LIMIT ? (free.containsKey(size) ? size : null) : free.ceilingKey(size);
        if (reuse != null && reuse <= size + size / 8) {
            ArrayDeque<Long> list = free.get(reuse);
            long p = list.pop();
            if (list.isEmpty()) free.remove(reuse);
            cachedBytes -= reuse;
            return new Block(p, reuse);
        }
        long p;
        try {
            p = source.allocate(size);
        } catch (CudaException e) {
            if (e.code() != CudaDriver.ERROR_OUT_OF_MEMORY || cachedBytes == 0) throw e;
            releaseCached();
            p = source.allocate(size);
        }
        reservedBytes += size;
        return new Block(p, size);
    }

    /** Returns a block to the cache (nothing goes back to the driver). */
    synchronized void release(Block b) {
        if (b.size() == 0) return;
        free.computeIfAbsent(b.size(), s -> new ArrayDeque<>()).push(b.pointer());
        cachedBytes += b.size();
    }

    /** Gives every cached block back to the driver. */
    synchronized void releaseCached() {
        if (free.isEmpty()) return;
        source.synchronize();
        for (Map.Entry<Long, ArrayDeque<Long>> e : free.entrySet()) {
            for (long p : e.getValue()) {
                source.free(p);
                reservedBytes -= e.getKey();
            }
        }
        free.clear();
        cachedBytes = 0;
    }

    /** Bytes held from the driver: in use plus cached. */
    synchronized long reservedBytes() {
        return reservedBytes;
    }

    /** Bytes cached in the free lists. */
    synchronized long cachedBytes() {
        return cachedBytes;
    }
}
