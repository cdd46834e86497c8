package dev.jsloth.api;

import java.lang.foreign.MemorySegment;

/**
 * A compute device: it owns tensors and runs {@link Kernels} on them. Obtain one through
 * {@link dev.jsloth.api.spi.Backends}; close it when done (tensors it still owns are freed).
 */
public interface Backend extends AutoCloseable {
    /** The provider's name, e.g. {@code cpu}. */
    String name();

    /** A human-readable description of the device (threads, vector width, GPU name, ...). */
    String description();

    /** A new zero-filled tensor. */
    Tensor allocate(DType dtype, Shape shape);

    default Tensor allocate(DType dtype, int... dims) {
        return allocate(dtype, Shape.of(dims));
    }

    /** A new floating tensor holding {@code values} (row-major), rounded to {@code dtype}. */
    Tensor upload(DType dtype, Shape shape, double[] values);

    /** A new {@link DType#I32} tensor holding {@code values}. */
    Tensor uploadInts(Shape shape, int[] values);

    /**
     * A new tensor whose bytes are copied from host memory laid out as {@code dtype} in little-endian order
     * (the safetensors layout). {@code bytes} must hold exactly {@code dtype.byteSize(shape.numel())} bytes.
     */
    Tensor uploadRaw(DType dtype, Shape shape, MemorySegment bytes);

    /** The values of a floating tensor, widened to double. */
    double[] download(Tensor t);

    /** The values of an {@link DType#I32} tensor. */
    int[] downloadInts(Tensor t);

    Kernels kernels();

    MemoryStats memoryStats();

    /** Starts a new peak-memory measurement from the bytes live now. */
    void resetPeak();

    /** Waits until every kernel issued so far has finished (a no-op on synchronous backends). */
    void synchronize();

    @Override
    void close();
}
