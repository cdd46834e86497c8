package dev.jsloth.api.quant;

import java.util.Arrays;

/**
 * bitsandbytes' signed 8-bit dynamic quantization map ({@code create_dynamic_map(signed=True)}): for exponent
 * i = 0..6, {@code 2^i} fraction values (midpoints of a {@code linspace(0.1, 1, 2^i + 1)}) scaled by
 * {@code 10^(i-6)}, with both signs, plus 0 and 1 — 256 sorted float32 values.
 */
public final class DynamicMap {
    /** The 256 values, ascending. */
    public static final float[] SIGNED = build();

    private DynamicMap() {
    }

    private static float[] build() {
        float[] data = new float[256];
        int n = 0;
        for (int i = 0; i < 7; i++) {
            int items = (1 << i) + 1;
            float[] bounds = linspace(0.1f, 1.0f, items);
            float scale = (float) Math.pow(10, -(7 - 1) + i);
            for (int j = 0; j + 1 < items; j++) {
                float mean = (bounds[j] + bounds[j + 1]) / 2.0f;
                data[n++] = scale * mean;
                data[n++] = -(scale * mean);
            }
        }
        data[n++] = 0f;
        data[n++] = 1.0f;
        if (n != 256) throw new AssertionError("dynamic map has " + n + " entries");
        Arrays.sort(data);
        return data;
    }

    /** torch.linspace in float32: the first half counts up from start, the second half down from end. */
    static float[] linspace(float start, float end, int steps) {
        float[] out = new float[steps];
        if (steps == 1) {
            out[0] = start;
            return out;
        }
        float step = (end - start) / (steps - 1);
        int half = steps / 2;
        for (int i = 0; i < steps; i++) out[i] = i < half ? start + step * i : end - step * (steps - i - 1);
        return out;
    }

    /** Index of the value of {@code map} nearest to x (the lower one on an exact tie). */
    public static int nearest(float[] map, float x) {
        int lo = 0, hi = map.length - 1;
        while (hi - lo > 1) {
            int mid = (lo + hi) >>> 1;
            if (map[mid] <= x) lo = mid;
            else hi = mid;
        }
        if (x <= map[lo]) return lo;
        if (x >= map[hi]) return hi;
        return (x - map[lo]) <= (map[hi] - x) ? lo : hi;
    }
}
