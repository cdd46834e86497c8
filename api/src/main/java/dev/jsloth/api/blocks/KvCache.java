package dev.jsloth.api.blocks;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Kernels;
import dev.jsloth.api.Tensor;

/**
 * Keys and values of one attention layer for incremental decoding of a single sequence: {@code [capacity,
 * kvHeads*headDim]} each, of which the first {@link #length()} rows are filled. With a sliding window (Mistral's
 * {@code sliding_window}) a query sees only the last {@code window} keys, its own among them, as transformers masks
 * them ({@code key position > query position - window}).
 */
public final class KvCache implements AutoCloseable {
    private final Tensor keys;
    private final Tensor values;
    private final int window;
    private int length;

    public KvCache(Backend be, DType dtype, int capacity, int kvDim) {
        this(be, dtype, capacity, kvDim, 0);
    }

    /** A cache whose queries see the last {@code window} keys ({@code 0}: all of them). */
    public KvCache(Backend be, DType dtype, int capacity, int kvDim, int window) {
        if (window < 0) throw new IllegalArgumentException("sliding window must be >= 0 (0: none), got " + window);
        this.window = window;
        Tensor k = be.allocate(dtype, capacity, kvDim);
        try {
            this.values = be.allocate(dtype, capacity, kvDim);
        } catch (RuntimeException | Error e) {
            k.close();
            throw e;
        }
        this.keys = k;
    }

    public int length() {
        return length;
    }

    public int capacity() {
        return keys.shape().dim(0);
    }

    /** Appends rows of k and v ({@code [n, kvDim]}); fails clearly when the cache is full. */
    void append(Kernels k, Tensor newKeys, Tensor newValues) {
        int n = Math.toIntExact(newKeys.shape().rows());
        if (length + n > capacity())
            throw new IllegalStateException("KV cache full: " + length + " + " + n + " tokens > capacity " + capacity());
        k.copy(newKeys, keys.rows(length, n));
        k.copy(newValues, values.rows(length, n));
        length += n;
    }

    /**
     * How many of the keys so far the {@code queries} just appended see: all of them, or the window's last ones. Past
     * the window, tokens must come one at a time (several new queries would each see another window).
     */
    int visibleLength(int queries) {
        if (window == 0 || length <= window) return length;
        if (queries != 1)
            throw new IllegalArgumentException("with a sliding window of " + window + " tokens, decode one token at a time once the cache"
                    + " holds more than the window (" + length + " keys, " + queries + " new queries)");
        return window;
    }

    Tensor keysSoFar(int visible) {
        return keys.rows(length - visible, visible);
    }

    Tensor valuesSoFar(int visible) {
        return values.rows(length - visible, visible);
    }

    @Override
    public void close() {
        keys.close();
        values.close();
    }
}
