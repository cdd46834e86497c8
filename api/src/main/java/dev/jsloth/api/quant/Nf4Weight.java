package dev.jsloth.api.quant;

/**
 * A weight quantized to NF4 on the host: packed codes (two per byte, first element in the high nibble), the
 * float32 absmax of each 64-block, and, under double quantization, its 8-bit codes, the per-256-block scales and
 * the offset. {@link #blockScales()} gives the absmax values dequantization actually uses.
 */
public record Nf4Weight(long numel, byte[] packed, float[] absmax, byte[] absmaxCodes, float[] nestedAbsmax,
                        float offset, boolean doubleQuant) {

    /** The per-block scales used by dequantization: absmax itself, or its double-quantized reconstruction. */
    public float[] blockScales() {
        if (!doubleQuant) return absmax;
        return dequantizeScales(absmaxCodes, nestedAbsmax, offset, DynamicMap.SIGNED);
    }

    /** The scales as stored: the absmax values, or their double quantization (with the signed dynamic map). */
    public Nf4Scales scales() {
        return doubleQuant ? Nf4Scales.doubleQuantized(absmaxCodes, DynamicMap.SIGNED, nestedAbsmax, offset) : Nf4Scales.plain(absmax);
    }

    /** {@code map8[a_b] * nested[b/256] + offset}, in float32. */
    public static float[] dequantizeScales(byte[] codes, float[] nested, float offset, float[] map8) {
        float[] out = new float[codes.length];
        for (int b = 0; b < codes.length; b++) out[b] = map8[codes[b] & 0xFF] * nested[b / Nf4.NESTED_BLOCK] + offset;
        return out;
    }

    /** The dequantized weight, {@code CODE[q] * scale_b} in float32. */
    public float[] dequantize() {
        return dequantize(packed, blockScales(), numel, Nf4.CODE);
    }

    public static float[] dequantize(byte[] packed, float[] scales, long numel, float[] code) {
        float[] out = new float[Math.toIntExact(numel)];
        for (int i = 0; i < out.length; i++) {
            int b = packed[i >> 1] & 0xFF;
            int q = (i & 1) == 0 ? b >>> 4 : b & 0xF;
            out[i] = code[q] * scales[i / Nf4.BLOCK];
        }
        return out;
    }
}
