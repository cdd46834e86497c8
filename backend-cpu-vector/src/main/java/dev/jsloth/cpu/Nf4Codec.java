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

    @Override
    public double get(MemorySegment s, long i) {
        int b = s.get(ValueLayout.JAVA_BYTE, i >> 1) & 0xFF;
        int q = (i & 1) == 0 ? b >>> 4 : b & 0xF;
        return Nf4.CODE[q] * scales[(int) (i / Nf4.BLOCK)];
    }

    @Override
    public void readFloats(MemorySegment s, long i, float[] dst, int off, int n) {
        for (int j = 0; j < n; j++) {
            long e = i + j;
            int b = s.get(ValueLayout.JAVA_BYTE, e >> 1) & 0xFF;
            int q = (e & 1) == 0 ? b >>> 4 : b & 0xF;
            dst[off + j] = Nf4.CODE[q] * scales[(int) (e / Nf4.BLOCK)];
        }
    }

    @Override
    public void set(MemorySegment s, long i, double v) {
        throw new UnsupportedOperationException("NF4 tensors are read-only (quantize on the host with Nf4.quantize)");
    }
}
