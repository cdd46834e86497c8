package dev.jsloth.api;

import dev.jsloth.api.quant.Nf4Scales;

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

    /**
     * A new tensor whose contents are unspecified (a GPU backend skips the zero fill): for outputs that a kernel
     * overwrites entirely before anything reads them, e.g. a GEMM result with {@code beta = 0}.
     */
    default Tensor allocateForOverwrite(DType dtype, Shape shape) {
        return allocate(dtype, shape);
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

    /**
     * A new {@link DType#NF4} tensor of logical shape {@code shape}: {@code packedCodes} holds two 4-bit codes per
     * byte (first element in the high nibble, bitsandbytes' layout), {@code blockScales} one float32 scale per
     * 64-element block of the flattened weight (the absmax, already reconstructed if it was double-quantized).
     * Kernels that read it (GEMM operands, {@link Kernels#copy}) dequantize on the fly:
     * {@code w_i = NF4[q_i] * scale[i/64]}.
     */
    Tensor uploadNf4(Shape shape, MemorySegment packedCodes, float[] blockScales);

    /**
     * As {@link #uploadNf4(Shape, MemorySegment, float[])}, with the scales as stored. A backend may keep
     * double-quantized scales in that form (a byte a block instead of four) if its kernels reconstruct exactly
     * {@link Nf4Scales#values()}; by default they are reconstructed here and uploaded as float32.
     */
    default Tensor uploadNf4(Shape shape, MemorySegment packedCodes, Nf4Scales scales) {
        return uploadNf4(shape, packedCodes, scales.values());
    }

    /** The values of a floating tensor, widened to double (an NF4 tensor is dequantized). */
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

    /**
     * Declares {@code t} (an owning tensor of this backend) constant from now on, as LoRA's frozen base weights are:
     * nothing may write into it or its views afterwards. A backend may then keep forms derived from it and refuse
     * writes; the CPU backend does both (its GEMM operand panels are packed once instead of on every product, and a
     * write throws). Cannot be undone. Default: nothing.
     */
    default void freeze(Tensor t) {
    }

    /**
     * The activation type LoRA training runs fastest at on this device: BF16 where 16-bit products run on tensor
     * cores (with F32 LoRA weights and accumulation), else F32. What {@code bench --shape} uses unless told.
     */
    default DType preferredTrainingType() {
        return DType.F32;
    }

    /**
     * The device's peak dense arithmetic rate in FLOP/s for products computed in {@code compute} (tensor cores for
     * 16-bit types), when the backend knows it: the denominator of model FLOPs utilisation. Empty by default.
     */
    default java.util.OptionalDouble peakFlops(DType compute) {
        return java.util.OptionalDouble.empty();
    }

    /**
     * A communicator over the processes of {@code group} for data-parallel training (blocks until every rank has
     * joined). The default moves host copies of tensors over TCP ({@link dev.jsloth.api.distributed.TcpCommunicator});
     * GPU backends override it with their collective library (NCCL for CUDA).
     */
    default dev.jsloth.api.distributed.Communicator communicator(dev.jsloth.api.distributed.ProcessGroup group) throws java.io.IOException {
        return dev.jsloth.api.distributed.TcpCommunicator.connect(group, this, dev.jsloth.api.distributed.TcpCommunicator.rendezvousTimeout());
    }
}
