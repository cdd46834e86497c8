package dev.jsloth.cuda;

import dev.jsloth.api.DType;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * The type table: each floating storage type with its C++ name in the kernel sources (the template argument), its
 * size, its cuBLASLt {@code cudaDataType}, and how the host encodes and decodes it (little-endian; 16-bit types
 * round to nearest even exactly as the CPU backend does).
 */
enum ElementType {
    F32(DType.F32, "float", 4, 0) {
        @Override
        double get(MemorySegment s, long i) {
            return s.getAtIndex(FLOAT, i);
        }

        @Override
        void set(MemorySegment s, long i, double v) {
            s.setAtIndex(FLOAT, i, (float) v);
        }
    },
    F64(DType.F64, "double", 8, 1) {
        @Override
        double get(MemorySegment s, long i) {
            return s.getAtIndex(DOUBLE, i);
        }

        @Override
        void set(MemorySegment s, long i, double v) {
            s.setAtIndex(DOUBLE, i, v);
        }
    },
    BF16(DType.BF16, "bf16_t", 2, 14) {
        @Override
        double get(MemorySegment s, long i) {
            return Float.intBitsToFloat((s.getAtIndex(SHORT, i) & 0xFFFF) << 16);
        }

        @Override
        void set(MemorySegment s, long i, double v) {
            s.setAtIndex(SHORT, i, toBf16((float) v));
        }
    },
    F16(DType.F16, "f16_t", 2, 2) {
        @Override
        double get(MemorySegment s, long i) {
            return Float.float16ToFloat(s.getAtIndex(SHORT, i));
        }

        @Override
        void set(MemorySegment s, long i, double v) {
            s.setAtIndex(SHORT, i, Float.floatToFloat16((float) v));
        }
    };

    private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfDouble DOUBLE = ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    final DType dtype;
    /** The type's name in the CUDA sources. */
    final String cppName;
    final int bytes;
    /** cuBLAS's cudaDataType_t (CUDA_R_32F, CUDA_R_64F, CUDA_R_16BF, CUDA_R_16F). */
    final int cudaDataType;

    ElementType(DType dtype, String cppName, int bytes, int cudaDataType) {
        this.dtype = dtype;
        this.cppName = cppName;
        this.bytes = bytes;
        this.cudaDataType = cudaDataType;
    }

    /** Host decoding of element i. */
    abstract double get(MemorySegment s, long i);

    /** Host encoding of element i, rounded to this type. */
    abstract void set(MemorySegment s, long i, double v);

    /** The type kernels accumulate in: F64 for F64, F32 otherwise. */
    ElementType accumulator() {
        return this == F64 ? F64 : F32;
    }

    static ElementType of(DType t) {
        return switch (t) {
            case F32 -> F32;
            case F64 -> F64;
            case BF16 -> BF16;
            case F16 -> F16;
            default -> throw new IllegalArgumentException("expected a floating tensor type, got " + t);
        };
    }

    /** float to bfloat16 bits, round to nearest even; NaN stays NaN (the CPU backend's rounding). */
    static short toBf16(float f) {
        int bits = Float.floatToRawIntBits(f);
        if ((bits & 0x7FFFFFFF) > 0x7F800000) return (short) ((bits >>> 16) | 0x0040);
        bits += 0x7FFF + ((bits >>> 16) & 1);
        return (short) (bits >>> 16);
    }
}
