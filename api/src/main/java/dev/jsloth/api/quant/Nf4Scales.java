package dev.jsloth.api.quant;

import java.util.Arrays;

/**
 * The per-64-block scales of an NF4 weight as they are stored: either one float32 absmax per block, or their double
 * quantization (bitsandbytes' {@code compress_statistics}): one 8-bit code per block, a 256-entry code table, one
 * float32 scale per {@link Nf4#NESTED_BLOCK} blocks and a float32 offset, from which
 * {@code absmax_b = codeValues[codes[b]] * nested[b / 256] + offset} (float32 multiply, then float32 add).
 *
 * <p>A backend may keep the double-quantized form on the device (about 1.03 bytes a block against 4) as long as it
 * reconstructs exactly these float32 values; {@link #values()} is that reconstruction on the host.
 */
public final class Nf4Scales {
    private final int blocks;
    private final float[] absmax;      // plain form
    private final byte[] codes;        // double-quantized form
    private final float[] codeValues;
    private final float[] nested;
    private final float offset;

    private Nf4Scales(int blocks, float[] absmax, byte[] codes, float[] codeValues, float[] nested, float offset) {
        this.blocks = blocks;
        this.absmax = absmax;
        this.codes = codes;
        this.codeValues = codeValues;
        this.nested = nested;
        this.offset = offset;
    }

    /** One float32 absmax a block. */
    public static Nf4Scales plain(float[] absmax) {
        return new Nf4Scales(absmax.length, absmax.clone(), null, null, null, 0f);
    }

    /**
     * Double-quantized scales: {@code codes} one a block, {@code codeValues} the 256-entry table they index,
     * {@code nested} one a 256 blocks ({@code ceil(codes.length / 256)} of them), {@code offset} added to every one.
     */
    public static Nf4Scales doubleQuantized(byte[] codes, float[] codeValues, float[] nested, float offset) {
        if (codeValues.length != 256)
            throw new IllegalArgumentException("the double quantization's code table needs 256 values, got " + codeValues.length);
        int want = (codes.length + Nf4.NESTED_BLOCK - 1) / Nf4.NESTED_BLOCK;
        if (nested.length != want)
            throw new IllegalArgumentException(codes.length + " block codes need " + want + " nested scales, got " + nested.length);
        return new Nf4Scales(codes.length, null, codes.clone(), codeValues.clone(), nested.clone(), offset);
    }

    /** Number of 64-element blocks these scales cover. */
    public int blocks() {
        return blocks;
    }

    public boolean isDoubleQuantized() {
        return codes != null;
    }

    /** The float32 scale of every block, as dequantization uses it. */
    public float[] values() {
        return isDoubleQuantized() ? Nf4Weight.dequantizeScales(codes, nested, offset, codeValues) : absmax.clone();
    }

    /** The 8-bit codes, one a block (double-quantized form only). */
    public byte[] codes() {
        requireDoubleQuantized();
        return codes.clone();
    }

    /** The 256 values the codes index (double-quantized form only). */
    public float[] codeValues() {
        requireDoubleQuantized();
        return codeValues.clone();
    }

    /** One float32 scale a 256 blocks (double-quantized form only). */
    public float[] nested() {
        requireDoubleQuantized();
        return nested.clone();
    }

    /** Added to every reconstructed scale (double-quantized form only). */
    public float offset() {
        requireDoubleQuantized();
        return offset;
    }

    private void requireDoubleQuantized() {
        if (!isDoubleQuantized()) throw new IllegalStateException("these NF4 scales are plain float32 absmax values");
    }

    @Override
    public String toString() {
        return isDoubleQuantized()
                ? "Nf4Scales[" + blocks + " blocks, double-quantized, offset " + offset + "]"
                : "Nf4Scales[" + blocks + " blocks, float32" + (blocks <= 4 ? " " + Arrays.toString(absmax) : "") + "]";
    }
}
