package dev.jsloth.cpu;

import dev.jsloth.api.DType;
import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
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
         * Widening runs in this class, not through the interface's per-element get (a megamorphic call site), a float
         * vector at a time, each into two double vectors (float to double is exact). Only the preferred species
         * ({@link #FLOATS}, {@link #DOUBLES}): see there.
         */
        @Override
        public void read(MemorySegment s, long i, double[] dst, int off, int n) {
            MemorySegment run = s.asSlice(i * 4, 4L * n);
            int j = 0, half = DOUBLES.length();
            for (int end = VECTORS ? FLOATS.loopBound(n) : 0; j < end; j += FLOATS.length()) {
                FloatVector f = FloatVector.fromMemorySegment(FLOATS, run, 4L * j, ByteOrder.LITTLE_ENDIAN);
                ((DoubleVector) f.convertShape(VectorOperators.F2D, DOUBLES, 0)).intoArray(dst, off + j);
                ((DoubleVector) f.convertShape(VectorOperators.F2D, DOUBLES, 1)).intoArray(dst, off + j + half);
            }
            for (; j < n; j++) dst[off + j] = run.getAtIndex(FLOAT, j);
        }

        /**
         * Narrowing rounds to nearest even, the same as the scalar {@code (float)} cast: two double vectors into the
         * lower and upper halves of one float vector.
         */
        @Override
        public void write(MemorySegment s, long i, double[] src, int off, int n) {
            MemorySegment run = Codec.writable(s).asSlice(i * 4, 4L * n);
            int j = 0, half = DOUBLES.length();
            for (int end = VECTORS ? FLOATS.loopBound(n) : 0; j < end; j += FLOATS.length()) {
                FloatVector lower = (FloatVector) DoubleVector.fromArray(DOUBLES, src, off + j).convertShape(VectorOperators.D2F, FLOATS, 0);
                FloatVector upper = (FloatVector) DoubleVector.fromArray(DOUBLES, src, off + j + half).convertShape(VectorOperators.D2F, FLOATS, -1);
                lower.blend(upper, UPPER_HALF).intoMemorySegment(run, 4L * j, ByteOrder.LITTLE_ENDIAN);
            }
            for (; j < n; j++) run.setAtIndex(FLOAT, j, (float) src[off + j]);
        }

        @Override
        public void readFloats(MemorySegment s, long i, float[] dst, int off, int n) {
            MemorySegment.copy(s, FLOAT, i * 4, dst, off, n);
        }

        @Override
        public void writeFloats(MemorySegment s, long i, float[] src, int off, int n) {
            MemorySegment.copy(src, off, Codec.writable(s), FLOAT, i * 4, n);
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
            MemorySegment.copy(src, off, Codec.writable(s), DOUBLE, i * 8, n);
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
     * The species F32 runs are widened and narrowed with: the preferred ones, never a second float shape. C2 keeps one
     * type profile per call site inside the Vector API's own methods (FloatVector.intoArray, fromMemorySegment, ...), shared
     * by every caller; once a second FloatVector class has passed through them (as a half-width float species here did,
     * 256-bit floats beside the kernels' 512-bit ones), a kernel compiled afterwards can inline those sites for the wrong
     * class, and its Vector API calls are then not intrinsified: every vector boxed, the GEMM's microkernel at 2-5
     * GFLOP/s instead of 150-200 (found with a 1024^3 product run after a download; NOTES.md, session 20).
     * {@code PreferredSpeciesOnlyTest} checks every species constant of this backend.
     */
    private static final VectorSpecies<Float> FLOATS = FloatVector.SPECIES_PREFERRED;
    private static final VectorSpecies<Double> DOUBLES = DoubleVector.SPECIES_PREFERRED;
    /** Whether a float vector is two double vectors wide and has at least 4 lanes (else the scalar loops run). */
    private static final boolean VECTORS = FLOATS.length() == 2 * DOUBLES.length() && FLOATS.length() >= 4;
    /** Lanes of a float vector that the second double vector of a pair fills. */
    private static final VectorMask<Float> UPPER_HALF = VectorMask.fromLong(FLOATS, VECTORS ? -1L << DOUBLES.length() : 0);
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
