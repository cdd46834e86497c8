package dev.jsloth.cpu;

import dev.jsloth.api.DType;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * Reads and writes runs of elements of one floating storage type, widening to float/double on read and
 * rounding (to nearest even) on write. Indices are in elements. Little-endian, as safetensors.
 */
enum ElementCodec implements Codec {
    F32 {
        @Override
        public double get(MemorySegment s, long i) {
            return s.getAtIndex(FLOAT, i);
        }

        @Override
        public void set(MemorySegment s, long i, double v) {
            s.setAtIndex(FLOAT, i, (float) v);
        }

        /** Widening runs in this class, not through the interface's per-element get (a megamorphic call site). */
        @Override
        public void read(MemorySegment s, long i, double[] dst, int off, int n) {
            MemorySegment run = s.asSlice(i * 4, 4L * n);
            for (int j = 0; j < n; j++) dst[off + j] = run.getAtIndex(FLOAT, j);
        }

        @Override
        public void write(MemorySegment s, long i, double[] src, int off, int n) {
            MemorySegment run = s.asSlice(i * 4, 4L * n);
            for (int j = 0; j < n; j++) run.setAtIndex(FLOAT, j, (float) src[off + j]);
        }

        @Override
        public void readFloats(MemorySegment s, long i, float[] dst, int off, int n) {
            MemorySegment.copy(s, FLOAT, i * 4, dst, off, n);
        }

        @Override
        public void writeFloats(MemorySegment s, long i, float[] src, int off, int n) {
            MemorySegment.copy(src, off, s, FLOAT, i * 4, n);
        }
    },
    F64 {
        @Override
        public double get(MemorySegment s, long i) {
            return s.getAtIndex(DOUBLE, i);
        }

        @Override
        public void set(MemorySegment s, long i, double v) {
            s.setAtIndex(DOUBLE, i, v);
        }

        @Override
        public void read(MemorySegment s, long i, double[] dst, int off, int n) {
            MemorySegment.copy(s, DOUBLE, i * 8, dst, off, n);
        }

        @Override
        public void write(MemorySegment s, long i, double[] src, int off, int n) {
            MemorySegment.copy(src, off, s, DOUBLE, i * 8, n);
        }
    },
    BF16 {
        @Override
        public double get(MemorySegment s, long i) {
            return Float.intBitsToFloat((s.getAtIndex(SHORT, i) & 0xFFFF) << 16);
        }

        @Override
        public void set(MemorySegment s, long i, double v) {
            s.setAtIndex(SHORT, i, toBf16((float) v));
        }
    },
    F16 {
        @Override
        public double get(MemorySegment s, long i) {
            return Float.float16ToFloat(s.getAtIndex(SHORT, i));
        }

        @Override
        public void set(MemorySegment s, long i, double v) {
            s.setAtIndex(SHORT, i, Float.floatToFloat16((float) v));
        }
    };

    static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfDouble DOUBLE = ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    @Override
    public abstract double get(MemorySegment s, long i);

    @Override
    public abstract void set(MemorySegment s, long i, double v);

    /** float to bfloat16 bits, round to nearest even; NaN stays NaN. */
    static short toBf16(float f) {
        int bits = Float.floatToRawIntBits(f);
        if ((bits & 0x7FFFFFFF) > 0x7F800000) return (short) ((bits >>> 16) | 0x0040);
        bits += 0x7FFF + ((bits >>> 16) & 1);
        return (short) (bits >>> 16);
    }

    static ElementCodec of(DType t) {
        return switch (t) {
            case F32 -> F32;
            case F64 -> F64;
            case BF16 -> BF16;
            case F16 -> F16;
            default -> throw new IllegalArgumentException(t + " is not a floating storage type");
        };
    }
}
