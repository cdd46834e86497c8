package dev.jsloth.io;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/** Encodes host values into safetensors' little-endian layouts (rounding to nearest even for 16-bit types). */
public final class TensorBytes {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfDouble F64 = ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private TensorBytes() {
    }

    public static MemorySegment encode(String dtype, double[] values, Arena arena) {
        MemorySegment s = arena.allocate((long) values.length * TensorEntry.elementSize(dtype));
        for (int i = 0; i < values.length; i++) {
            switch (dtype) {
                case "F64" -> s.setAtIndex(F64, i, values[i]);
                case "F32" -> s.setAtIndex(F32, i, (float) values[i]);
                case "F16" -> s.setAtIndex(I16, i, Float.floatToFloat16((float) values[i]));
                case "BF16" -> s.setAtIndex(I16, i, bf16((float) values[i]));
                default -> throw new IllegalArgumentException("cannot encode " + dtype);
            }
        }
        return s;
    }

    /** The values of a floating tensor's little-endian bytes (F32, F64, F16, BF16) as floats. */
    public static float[] decodeFloats(String dtype, MemorySegment bytes) {
        int n = Math.toIntExact(bytes.byteSize() / TensorEntry.elementSize(dtype));
        float[] out = new float[n];
        for (int i = 0; i < n; i++) {
            out[i] = switch (dtype) {
                case "F32" -> bytes.getAtIndex(F32, i);
                case "F64" -> (float) bytes.getAtIndex(F64, i);
                case "F16" -> Float.float16ToFloat(bytes.getAtIndex(I16, i));
                case "BF16" -> Float.intBitsToFloat((bytes.getAtIndex(I16, i) & 0xFFFF) << 16);
                default -> throw new IllegalArgumentException("cannot decode " + dtype + " as floats");
            };
        }
        return out;
    }

    /** float to bfloat16 bits, round to nearest even; NaN stays NaN. */
    public static short bf16(float f) {
        int bits = Float.floatToRawIntBits(f);
        if ((bits & 0x7FFFFFFF) > 0x7F800000) return (short) ((bits >>> 16) | 0x0040);
        bits += 0x7FFF + ((bits >>> 16) & 1);
        return (short) (bits >>> 16);
    }
}
