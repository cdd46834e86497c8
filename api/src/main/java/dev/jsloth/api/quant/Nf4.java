package dev.jsloth.api.quant;

/**
 * 4-bit NormalFloat quantization exactly as bitsandbytes does it ({@code quantize_4bit(quant_type="nf4",
 * blocksize=64)}), with optional double quantization of the block scales.
 *
 * <ul>
 * <li>The row-major flattened weight is cut into blocks of {@link #BLOCK} = 64 elements; each block's scale is its
 * absmax (float32).</li>
 * <li>Each element is normalised as {@code x * (1/absmax)} (float32, as bitsandbytes' kernel multiplies by the
 * reciprocal) and mapped to the nearest of the 16 {@link #CODE} values by midpoint thresholds, a value exactly on
 * a threshold going to the lower index.</li>
 * <li>Two codes per byte, the first element in the high nibble.</li>
 * <li>Double quantization: {@code offset = mean(absmax)}; {@code absmax - offset} is quantized to 8 bits in blocks of
 * {@link #NESTED_BLOCK} = 256 with the signed dynamic map ({@link DynamicMap}), nearest value, one float32 scale
 * (the block's absmax) per 256 blocks.</li>
 * <li>Dequantization: {@code w = CODE[q] * absmax_b} with {@code absmax_b = MAP8[a_b] * nested[b/256] + offset}
 * under double quantization, all in float32.</li>
 * </ul>
 */
public final class Nf4 {
    public static final int BLOCK = 64;
    public static final int NESTED_BLOCK = 256;

    /** The NF4 code table, index 0..15. */
    public static final float[] CODE = {
            -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
            -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
            0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
            0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

    /** Midpoints between consecutive codes (computed in double, as bitsandbytes' decision-tree literals). */
    static final float[] THRESHOLDS = new float[15];

    static {
        for (int i = 0; i < 15; i++) THRESHOLDS[i] = (float) (((double) CODE[i] + (double) CODE[i + 1]) / 2);
    }

    private Nf4() {
    }

    /** The code index of a normalised value: the number of thresholds strictly below it. */
    public static int quantizeValue(float x) {
        int q = 0;
        while (q < 15 && x > THRESHOLDS[q]) q++;
        return q;
    }

    /** Number of 64-element blocks of a weight of {@code numel} elements. */
    public static int blocks(long numel) {
        return Math.toIntExact((numel + BLOCK - 1) / BLOCK);
    }

    /**
     * Quantizes {@code w} (row-major flattened, even length). Returns the packed codes, the per-block absmax, and
     * (when {@code doubleQuant}) its 8-bit double quantization.
     */
    public static Nf4Weight quantize(float[] w, boolean doubleQuant) {
        if (w.length % 2 != 0) throw new IllegalArgumentException("NF4 needs an even number of elements, got " + w.length);
        int nb = blocks(w.length);
        float[] absmax = new float[nb];
        byte[] packed = new byte[w.length / 2];
        for (int b = 0; b < nb; b++) {
            int lo = b * BLOCK, hi = Math.min(w.length, lo + BLOCK);
            float m = 0;
            for (int i = lo; i < hi; i++) m = Math.max(m, Math.abs(w[i]));
            absmax[b] = m;
            float inv = m == 0 ? 0 : 1.0f / m;
            for (int i = lo; i < hi; i++) {
                int q = quantizeValue(w[i] * inv);
                if ((i & 1) == 0) packed[i >> 1] = (byte) (q << 4);
                else packed[i >> 1] |= (byte) q;
            }
        }
        if (!doubleQuant) return new Nf4Weight(w.length, packed, absmax, null, null, 0, false);
        double sum = 0;
        for (float a : absmax) sum += a;
        float offset = (float) (sum / nb);
        int nn = (nb + NESTED_BLOCK - 1) / NESTED_BLOCK;
        float[] nested = new float[nn];
        byte[] codes = new byte[nb];
        float[] map = DynamicMap.SIGNED;
        for (int c = 0; c < nn; c++) {
            int lo = c * NESTED_BLOCK, hi = Math.min(nb, lo + NESTED_BLOCK);
            float m = 0;
            for (int i = lo; i < hi; i++) m = Math.max(m, Math.abs(absmax[i] - offset));
            nested[c] = m;
            float inv = m == 0 ? 0 : 1.0f / m;
            for (int i = lo; i < hi; i++) codes[i] = (byte) DynamicMap.nearest(map, (absmax[i] - offset) * inv);
        }
        return new Nf4Weight(w.length, packed, absmax, codes, nested, offset, true);
    }
}
