package dev.jsloth.opencl;

import dev.jsloth.api.DType;
import dev.jsloth.api.quant.Nf4;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * Host-side conversion between doubles and the little-endian bytes of each storage type, for upload and
 * download: a double is rounded to float first and then to a 16-bit type (to nearest even), exactly as the CPU
 * reference and the device kernels round.
 */
final class HostCodec {
    static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfDouble DOUBLE = ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfInt INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private HostCodec() {
    }

    /** Writes {@code values} into {@code dst} as {@code dtype} (a floating type). */
    static void encode(DType dtype, double[] values, MemorySegment dst) {
        switch (dtype) {
            case F32 -> {
                for (int i = 0; i < values.length; i++) dst.setAtIndex(FLOAT, i, (float) values[i]);
            }
            case F64 -> MemorySegment.copy(values, 0, dst, DOUBLE, 0, values.length);
            case BF16 -> {
                for (int i = 0; i < values.length; i++) dst.setAtIndex(SHORT, i, toBf16((float) values[i]));
            }
            case F16 -> {
                for (int i = 0; i < values.length; i++) dst.setAtIndex(SHORT, i, Float.floatToFloat16((float) values[i]));
            }
            default -> throw new IllegalArgumentException(dtype + " is not a floating storage type");
        }
    }

    /** Reads {@code out.length} elements of {@code dtype} from {@code src}, widened to double. */
    static void decode(DType dtype, MemorySegment src, double[] out) {
        switch (dtype) {
            case F32 -> {
                for (int i = 0; i < out.length; i++) out[i] = src.getAtIndex(FLOAT, i);
            }
            case F64 -> MemorySegment.copy(src, DOUBLE, 0, out, 0, out.length);
            case BF16 -> {
                for (int i = 0; i < out.length; i++) out[i] = Float.intBitsToFloat((src.getAtIndex(SHORT, i) & 0xFFFF) << 16);
            }
            case F16 -> {
                for (int i = 0; i < out.length; i++) out[i] = Float.float16ToFloat(src.getAtIndex(SHORT, i));
            }
            default -> throw new IllegalArgumentException(dtype + " is not a floating storage type");
        }
    }

    /** Dequantizes packed NF4 codes: {@code CODE[q] * scale[i/64]} in float, widened. */
    static void decodeNf4(MemorySegment packed, float[] scales, double[] out) {
        for (int i = 0; i < out.length; i++) {
            int b = packed.get(ValueLayout.JAVA_BYTE, i >> 1) & 0xFF;
            int q = (i & 1) == 0 ? b >>> 4 : b & 0xF;
            out[i] = Nf4.CODE[q] * scales[i / Nf4.BLOCK];
        }
    }

    /** float to bfloat16 bits, round to nearest even; NaN stays NaN. */
    static short toBf16(float f) {
        int bits = Float.floatToRawIntBits(f);
        if ((bits & 0x7FFFFFFF) > 0x7F800000) return (short) ((bits >>> 16) | 0x0040);
        bits += 0x7FFF + ((bits >>> 16) & 1);
        return (short) (bits >>> 16);
    }
}
