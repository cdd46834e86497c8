package dev.jsloth.api;

/**
 * Element types a tensor can hold.
 *
 * <p>Compute happens in {@link #F32} or {@link #F64}; {@link #BF16} and {@link #F16} are storage types that
 * kernels widen on read and round (to nearest even) on write. {@link #NF4} is the packed 4-bit NormalFloat type
 * (two codes per byte, first element in the high nibble) used for QLoRA base weights.
 */
public enum DType {
    F32(32, true),
    F64(64, true),
    BF16(16, true),
    F16(16, true),
    I32(32, false),
    /** Packed 4-bit NormalFloat codes; the block scales live beside the tensor (see the QLoRA ops). */
    NF4(4, false);

    private final int bits;
    private final boolean floating;

    DType(int bits, boolean floating) {
        this.bits = bits;
        this.floating = floating;
    }

    public int bits() {
        return bits;
    }

    /** True for the types that hold real numbers element by element (F32, F64, BF16, F16). */
    public boolean isFloating() {
        return floating;
    }

    /** Bytes needed for {@code numel} elements, rounded up to whole bytes; throws on overflow. */
    public long byteSize(long numel) {
        if (numel < 0) throw new IllegalArgumentException("negative element count " + numel);
        return Math.ceilDiv(Math.multiplyExact(numel, (long) bits), 8L);
    }
}
