package dev.jsloth.cpu;

import dev.jsloth.api.quant.Nf4;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Reads an NF4 tensor as floats, dequantizing on the fly ({@code NF4[q] * scale[i/64]} in float32): this is how
 * GEMM packing consumes QLoRA base weights tile by tile, so the full-precision weight never exists. Read-only.
 */
final class Nf4Codec implements Codec {
    private final float[] scales;

    Nf4Codec(float[] scales) {
        this.scales = scales;
    }

    /** The block scales (one a {@link Nf4#BLOCK} elements), for the kernels that read the codes themselves ({@link GemmFewRows}). */
    float[] scales() {
        return scales;
    }

    @Override
    public double get(MemorySegment s, long i) {
        int b = s.get(ValueLayout.JAVA_BYTE, i >> 1) & 0xFF;
        int q = (i & 1) == 0 ? b >>> 4 : b & 0xF;
        return Nf4.CODE[q] * scales[(int) (i / Nf4.BLOCK)];
    }

    /**
     * A byte (two codes) at a time and a block at a time: the same floats as {@link #get} (each {@code CODE[q] * scale}
     * in float32), without a division and a byte read per element (packing a QLoRA weight's panels for each product
     * reads all of it this way: 1.4 ns an element against 2.65 on a Zen 3 core).
     */
    @Override
    public void readFloats(MemorySegment s, long i, float[] dst, int off, int n) {
        int j = 0;
        if ((i & 1) != 0 && n > 0) dst[off + j++] = (float) get(s, i); // an odd first element: the low half of its byte
        while (j + 1 < n) { // element i + j is even; a block at a time (blocks are even-sized), its scale read once
            int block = (int) ((i + j) / Nf4.BLOCK);
            float scale = scales[block];
            int limit = (int) Math.min(n, (long) (block + 1) * Nf4.BLOCK - i), end = j + ((limit - j) & ~1); // whole bytes
            for (; j < end; j += 2) {
                int codes = s.get(ValueLayout.JAVA_BYTE, (i + j) >> 1) & 0xFF;
                dst[off + j] = Nf4.CODE[codes >>> 4] * scale;
                dst[off + j + 1] = Nf4.CODE[codes & 0xF] * scale;
            }
        }
        if (j < n) dst[off + j] = (float) get(s, i + j);
    }

    @Override
    public void set(MemorySegment s, long i, double v) {
        throw new UnsupportedOperationException("NF4 tensors are read-only (quantize on the host with Nf4.quantize)");
    }
}
