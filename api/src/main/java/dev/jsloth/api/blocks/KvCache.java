package dev.jsloth.api.blocks;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Kernels;
import dev.jsloth.api.Tensor;

/**
 * Keys and values of one attention layer for incremental decoding of a single sequence: {@code [capacity,
 * kvHeads*headDim]} each, of which the first {@link #length()} rows are filled.
 */
public final class KvCache implements AutoCloseable {
    private final Tensor keys;
    private final Tensor values;
    private int length;

    public KvCache(Backend be, DType dtype, int capacity, int kvDim) {
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

    Tensor keysSoFar() {
        return keys.rows(0, length);
    }

    Tensor valuesSoFar() {
        return values.rows(0, length);
    }

    @Override
    public void close() {
        keys.close();
        values.close();
    }
}
