package dev.jsloth.opencl;

import org.jocl.CL;
import org.jocl.CLException;
import org.jocl.cl_mem;

import java.util.ArrayDeque;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.LongFunction;

/**
 * A cache of OpenCL buffers by size class (powers of two from 512 B to 1 MiB, then multiples of 2 MiB, as the CUDA
 * backend's allocator): a released buffer goes to its class's free list and is handed out again, so a training loop
 * that allocates the same shapes step after step stops creating and releasing buffers after its first step (on
 * NVIDIA's driver, where a step allocates thousands of activations, that left the GPU idle ~30% of a tinyllama step).
 * Reuse needs no events: the backend has one in-order queue, so commands enqueued after a release run after every
 * command that used the buffer before. A large request may take a cached buffer up to 1/8 larger. When creating a
 * buffer fails, the cache is given back to the driver (after the queue drains) and the creation retried once; the
 * cache holds at most a quarter of the device's memory.
 */
final class BufferPool {
    static final long MIN_BLOCK = 512;
    static final long SMALL_LIMIT = 1L << 20;
    static final long LARGE_GRANULE = 2L << 20;

    /** A buffer and its size class (its actual size in bytes). */
    record Block(cl_mem buffer, long size) {
    }

    private final LongFunction<cl_mem> create;
    private final Runnable drain;
    private final long cap;
    private final TreeMap<Long, ArrayDeque<cl_mem>> free = new TreeMap<>();
    private long cachedBytes;

    /**
     * @param create makes a buffer of the given size
     * @param drain  waits until the queue's commands are done
     * @param cap    the most bytes the cache holds (released buffers beyond it go back to the driver)
     */
    BufferPool(LongFunction<cl_mem> create, Runnable drain, long cap) {
        this.create = create;
        this.drain = drain;
        this.cap = cap;
    }

    /** The size class of a request of {@code bytes} (at least 1). */
    static long sizeClass(long bytes) {
        if (bytes <= MIN_BLOCK) return MIN_BLOCK;
        if (bytes <= SMALL_LIMIT) return Long.highestOneBit(bytes - 1) << 1;
        return Math.ceilDiv(bytes, LARGE_GRANULE) * LARGE_GRANULE;
    }

    synchronized Block acquire(long bytes) {
        long size = sizeClass(bytes);
        Long reuse = size <= SMALL_LIMIT ? (free.containsKey(size) ? size : null) : free.ceilingKey(size);
        if (reuse != null && reuse <= size + size / 8) {
            ArrayDeque<cl_mem> list = free.get(reuse);
            cl_mem m = list.pop();
            if (list.isEmpty()) free.remove(reuse);
            cachedBytes -= reuse;
            return new Block(m, reuse);
        }
        try {
            return new Block(create.apply(size), size);
        } catch (CLException | dev.jsloth.api.DeviceOutOfMemoryException e) {
            if (cachedBytes == 0) throw e;
            releaseCached();
            return new Block(create.apply(size), size);
        }
    }

    /**
     * Caches a released buffer, or gives it back to the driver when the cache already holds {@code cap} bytes: NVIDIA's
     * driver reserves memory when a buffer is first used, so running out shows at an enqueue (which cannot be retried
     * here), and a cache that grew without bound across changing shapes (training, then evaluation at another length)
     * could make that happen where freeing would not.
     */
    synchronized void release(Block b) {
        if (cachedBytes + b.size() > cap) {
            CL.clReleaseMemObject(b.buffer());
            return;
        }
        free.computeIfAbsent(b.size(), s -> new ArrayDeque<>()).push(b.buffer());
        cachedBytes += b.size();
    }

    /** Gives every cached buffer back to the driver. */
    synchronized void releaseCached() {
        if (free.isEmpty()) return;
        try {
            drain.run();
        } finally { // released even if the drain failed: clReleaseMemObject itself waits for queued work that uses a buffer
            for (Map.Entry<Long, ArrayDeque<cl_mem>> e : free.entrySet())
                for (cl_mem m : e.getValue()) CL.clReleaseMemObject(m);
            free.clear();
            cachedBytes = 0;
        }
    }

    synchronized long cachedBytes() {
        return cachedBytes;
    }
}
