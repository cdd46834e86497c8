package dev.jsloth.api.spi;

import dev.jsloth.api.MemoryStats;
import dev.jsloth.api.Tensor;

import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A backend's owning tensors that are still alive and the bytes they hold: what {@code Backend.memoryStats()} reports
 * (live bytes, peak since the last reset, live tensors) and what the backend's {@code close()} frees. Thread-safe.
 *
 * @param <T> the backend's tensor class
 */
public final class LiveTensors<T extends Tensor> {
    private final Set<T> live = ConcurrentHashMap.newKeySet();
    private final AtomicLong liveBytes = new AtomicLong();
    private final AtomicLong peakBytes = new AtomicLong();

    /** Records a new owning tensor holding {@code bytes}; returns it. */
    public T add(T t, long bytes) {
        live.add(t);
        long now = liveBytes.addAndGet(bytes);
        peakBytes.accumulateAndGet(now, Math::max);
        return t;
    }

    /** Forgets {@code t} and its {@code bytes}; false (and nothing changes) when it was not live. */
    public boolean remove(T t, long bytes) {
        if (!live.remove(t)) return false;
        liveBytes.addAndGet(-bytes);
        return true;
    }

    /**
     * Records {@code bytes} (negative: frees them) that the backend holds for its tensors beside their own memory
     * (derived forms, caches): counted in live and peak bytes like a tensor's.
     */
    public void addDerivedBytes(long bytes) {
        long now = liveBytes.addAndGet(bytes);
        if (bytes > 0) peakBytes.accumulateAndGet(now, Math::max);
    }

    public long liveBytes() {
        return liveBytes.get();
    }

    public MemoryStats stats() {
        return new MemoryStats(liveBytes.get(), peakBytes.get(), live.size());
    }

    /** Starts a new peak measurement from the bytes live now. */
    public void resetPeak() {
        peakBytes.set(liveBytes.get());
    }

    /** Closes every live tensor (each releases itself through {@link #remove}). */
    public void closeAll() {
        for (T t : List.copyOf(live)) t.close();
    }
}
