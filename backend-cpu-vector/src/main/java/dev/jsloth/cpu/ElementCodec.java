package dev.jsloth.cpu;

import dev.jsloth.api.DType;
import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

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

        /**
         * Widening runs in this class, not through the interface's per-element get (a megamorphic call site), a whole
         * double vector at a time (float to double is exact; 2x the scalar loop's rate in isolation, at 4 lanes).
         */
        @Override
        public void read(MemorySegment s, long i, double[] dst, int off, int n) {
            MemorySegment run = s.asSlice(i * 4, 4L * n);
            int j = 0;
            for (int end = WIDE ? HALF_FLOATS.loopBound(n) : 0; j < end; j += HALF_FLOATS.length()) {
                FloatVector f = FloatVector.fromMemorySegment(HALF_FLOATS, run, 4L * j, ByteOrder.LITTLE_ENDIAN);
                ((DoubleVector) f.convertShape(VectorOperators.F2D, DOUBLES, 0)).intoArray(dst, off + j);
            }
            for (; j < n; j++) dst[off + j] = run.getAtIndex(FLOAT, j);
        }

        /** Narrowing rounds to nearest even, the same as the scalar {@code (float)} cast. */
        @Override
        public void write(MemorySegment s, long i, double[] src, int off, int n) {
            MemorySegment run = s.asSlice(i * 4, 4L * n);
            int j = 0;
            for (int end = WIDE ? HALF_FLOATS.loopBound(n) : 0; j < end; j += HALF_FLOATS.length()) {
                DoubleVector d = DoubleVector.fromArray(DOUBLES, src, off + j);
                d.convertShape(VectorOperators.D2F, HALF_FLOATS, 0).intoMemorySegment(run, 4L * j, ByteOrder.LITTLE_ENDIAN);
            }
            for (; j < n; j++) run.setAtIndex(FLOAT, j, (float) src[off + j]);
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

    /**
     * Whether 4 doubles fit a hardware vector (AVX2 and up): on 128-bit machines (NEON) a 256-bit species would run the
     * Vector API's Java fallback, far slower than the scalar loop, so F32 runs are then widened and narrowed by it.
     */
    private static final boolean WIDE = DoubleVector.SPECIES_PREFERRED.vectorBitSize() >= 256;
    /**
     * F32 runs are widened a whole double vector at a time (8 lanes with AVX-512: reading 16M floats into doubles, as the
     * cross-entropy does with a llama-25m step's logits, took 1 / 1.22 of the time 4 lanes did).
     */
    private static final VectorSpecies<Double> DOUBLES = WIDE ? DoubleVector.SPECIES_PREFERRED : DoubleVector.SPECIES_256;
    private static final VectorSpecies<Float> HALF_FLOATS =
            VectorSpecies.of(float.class, jdk.incubator.vector.VectorShape.forBitSize(DOUBLES.vectorBitSize() / 2));
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
