package dev.jsloth.cpu;

import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.LongVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * A lane-wise double exp written in plain IEEE operations (fma, add, shifts), so that it gives the same bits in
 * every JIT tier. The Vector API's own {@code EXP} does not: before C2 compiles a loop it runs a Java fallback,
 * after, an SVML stub, and their last bits differ — which made a resumed training run differ from an uninterrupted
 * one. Accuracy: within 2 ulp of {@link Math#exp} (tested), 0 below -708 (where exp is below 3.4e-308), +inf
 * above 709.78, NaN for NaN.
 *
 * <p>exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 (two-part ln 2, |r| <= 0.347), exp(r) by its Taylor
 * series to degree 13 (truncation below 4e-18).
 *
 * <p>The float version (for the F32 attention kernel) is the same recipe in single precision: ln 2 in two parts, the
 * Taylor series to degree 7 (truncation below 6e-9, under half an ulp), 0 below -86.5 (where exp is below 3e-38),
 * +inf above 88.72; within 2 ulp of {@link Math#exp} rounded to float (tested).
 */
final class VectorMath {
    static final VectorSpecies<Double> DV = DoubleVector.SPECIES_PREFERRED;
    private static final double LOG2E = 1.4426950408889634;
    private static final double LN2_HI = 0.6931471803691238, LN2_LO = 1.9082149292705877e-10;
    /** 1.5 * 2^52: adding it rounds to an integer held in the low bits of the double. */
    private static final double ROUND = 6755399441055744.0;
    private static final long ROUND_BITS = Double.doubleToRawLongBits(ROUND);
    private static final double[] INV_FACTORIAL = new double[14];

    static {
        double f = 1;
        for (int i = 0; i < INV_FACTORIAL.length; i++) {
            if (i > 0) f *= i;
            INV_FACTORIAL[i] = 1.0 / f;
        }
    }

    static final VectorSpecies<Float> FV = FloatVector.SPECIES_PREFERRED;
    private static final float LOG2E_F = 1.44269504f;
    private static final float LN2_HI_F = 0.693359375f, LN2_LO_F = -2.12194440e-4f;
    /** 1.5 * 2^23: adding it rounds to an integer held in the low bits of the float. */
    private static final float ROUND_F = 12582912f;
    private static final int ROUND_F_BITS = Float.floatToRawIntBits(ROUND_F);

    private VectorMath() {
    }

    /** exp of each of {@code x[0..n)} in place. */
    static void expInPlace(double[] x, int n) {
        expInPlace(x, 0, n);
    }

    /**
     * exp of each of {@code x[from..from+n)} in place. The whole computation sits in the loop body on purpose: a
     * vector returned from a method the JIT did not inline is boxed, and that ran 50x slower in some runs.
     */
    static void expInPlace(double[] x, int from, int n) {
        int end = from + DV.loopBound(n);
        expVectors(x, from, end);
        if (end < from + n) { // through a padded copy: masked loads/stores are not intrinsics on AVX2
            double[] tail = new double[DV.length()];
            System.arraycopy(x, end, tail, 0, from + n - end);
            expVectors(tail, 0, tail.length);
            System.arraycopy(tail, 0, x, end, from + n - end);
        }
    }

    /** exp of each of {@code x[from..from+n)} in place, in single precision (see the class comment). */
    static void expInPlace(float[] x, int from, int n) {
        int end = from + FV.loopBound(n);
        expVectors(x, from, end);
        if (end < from + n) { // through a padded copy: masked loads/stores are not intrinsics on AVX2
            float[] tail = new float[FV.length()];
            System.arraycopy(x, end, tail, 0, from + n - end);
            expVectors(tail, 0, tail.length);
            System.arraycopy(tail, 0, x, end, from + n - end);
        }
    }

    /** x[from] + ... + x[from+n-1] in float, summed in vector lanes and the lanes then added left to right. */
    static float sum(float[] x, int from, int n) {
        FloatVector acc = FloatVector.zero(FV);
        int j = from;
        for (int end = from + FV.loopBound(n); j < end; j += FV.length()) acc = acc.add(FloatVector.fromArray(FV, x, j));
        float s = 0;
        for (float l : acc.toArray()) s += l;
        for (; j < from + n; j++) s += x[j];
        return s;
    }

    /**
     * x[0] + ... + x[n-1], summed in vector lanes and the lanes then added in a fixed order: the same result in every
     * JIT tier (a scalar loop's serial dependency costs 3-4 cycles per element; reduceLanes may associate differently
     * interpreted and compiled).
     */
    static double sum(double[] x, int n) {
        DoubleVector acc = DoubleVector.zero(DV);
        int j = 0;
        for (int end = DV.loopBound(n); j < end; j += DV.length()) acc = acc.add(DoubleVector.fromArray(DV, x, j));
        double s = sumLanesInOrder(acc);
        for (; j < n; j++) s += x[j];
        return s;
    }

    /** lane 0 + lane 1 + ..., left to right (never reduceLanes, whose association differs between JIT tiers). */
    static double sumLanesInOrder(DoubleVector v) {
        double[] lanes = v.toArray();
        double s = 0;
        for (double l : lanes) s += l;
        return s;
    }

    /** The largest of {@code init} and x[0..n), NaN if any is NaN (max is exact, so lanes need no fixed order). */
    static double max(double[] x, int n, double init) {
        DoubleVector acc = DoubleVector.broadcast(DV, init);
        int j = 0;
        for (int end = DV.loopBound(n); j < end; j += DV.length()) acc = acc.max(DoubleVector.fromArray(DV, x, j));
        double m = acc.reduceLanes(VectorOperators.MAX);
        for (; j < n; j++) m = Math.max(m, x[j]);
        return m;
    }

    /** exp of x[from..end) in place, end - from a multiple of the vector length. */
    private static void expVectors(double[] a, int from, int end) {
        DoubleVector c0 = DoubleVector.broadcast(DV, INV_FACTORIAL[0]), c1 = DoubleVector.broadcast(DV, INV_FACTORIAL[1]);
        DoubleVector c2 = DoubleVector.broadcast(DV, INV_FACTORIAL[2]), c3 = DoubleVector.broadcast(DV, INV_FACTORIAL[3]);
        DoubleVector c4 = DoubleVector.broadcast(DV, INV_FACTORIAL[4]), c5 = DoubleVector.broadcast(DV, INV_FACTORIAL[5]);
        DoubleVector c6 = DoubleVector.broadcast(DV, INV_FACTORIAL[6]), c7 = DoubleVector.broadcast(DV, INV_FACTORIAL[7]);
        DoubleVector c8 = DoubleVector.broadcast(DV, INV_FACTORIAL[8]), c9 = DoubleVector.broadcast(DV, INV_FACTORIAL[9]);
        DoubleVector c10 = DoubleVector.broadcast(DV, INV_FACTORIAL[10]), c11 = DoubleVector.broadcast(DV, INV_FACTORIAL[11]);
        DoubleVector c12 = DoubleVector.broadcast(DV, INV_FACTORIAL[12]), c13 = DoubleVector.broadcast(DV, INV_FACTORIAL[13]);
        DoubleVector ln2Hi = DoubleVector.broadcast(DV, LN2_HI), ln2Lo = DoubleVector.broadcast(DV, LN2_LO);
        for (int j = from; j < end; j += DV.length()) {
            DoubleVector x = DoubleVector.fromArray(DV, a, j);
            DoubleVector t = x.mul(LOG2E).add(ROUND); // n in the low bits
            DoubleVector n = t.sub(ROUND);
            DoubleVector r = n.neg().fma(ln2Hi, x);
            r = n.neg().fma(ln2Lo, r);
            DoubleVector p = c13.fma(r, c12).fma(r, c11).fma(r, c10).fma(r, c9).fma(r, c8).fma(r, c7).fma(r, c6)
                    .fma(r, c5).fma(r, c4).fma(r, c3).fma(r, c2).fma(r, c1).fma(r, c0);
            // 2^n as 2^(n-1) * 2: n runs from -1021 (x = -708) to 1024 (x = 709.78), n - 1 stays a normal exponent.
            // (No 64-bit arithmetic shift or double-to-long conversion: AVX2 has neither, and the Vector API falls
            // back to scalar Java for them.)
            LongVector nBits = t.reinterpretAsLongs().sub(ROUND_BITS);
            DoubleVector scale = nBits.add(1022).lanewise(VectorOperators.LSHL, 52).reinterpretAsDoubles();
            DoubleVector e = p.mul(scale).mul(2.0);
            e = e.blend(0.0, x.lt(-708.0));
            e = e.blend(Double.POSITIVE_INFINITY, x.compare(VectorOperators.GT, 709.782712893384));
            e.blend(x, x.test(VectorOperators.IS_NAN)).intoArray(a, j);
        }
    }

    /** exp of a[from..end) in place in float, end - from a multiple of the vector length. */
    private static void expVectors(float[] a, int from, int end) {
        FloatVector c2 = FloatVector.broadcast(FV, 1f / 2), c3 = FloatVector.broadcast(FV, 1f / 6);
        FloatVector c4 = FloatVector.broadcast(FV, 1f / 24), c5 = FloatVector.broadcast(FV, 1f / 120);
        FloatVector c6 = FloatVector.broadcast(FV, 1f / 720), c7 = FloatVector.broadcast(FV, 1f / 5040);
        FloatVector one = FloatVector.broadcast(FV, 1f);
        FloatVector ln2Hi = FloatVector.broadcast(FV, LN2_HI_F), ln2Lo = FloatVector.broadcast(FV, LN2_LO_F);
        for (int j = from; j < end; j += FV.length()) {
            FloatVector x = FloatVector.fromArray(FV, a, j);
            FloatVector t = x.mul(LOG2E_F).add(ROUND_F); // n in the low bits
            FloatVector n = t.sub(ROUND_F);
            FloatVector r = n.neg().fma(ln2Hi, x);
            r = n.neg().fma(ln2Lo, r);
            FloatVector p = c7.fma(r, c6).fma(r, c5).fma(r, c4).fma(r, c3).fma(r, c2).fma(r, one).fma(r, one);
            // 2^n as 2^(n-1) * 2: n runs from -125 (x = -86.5) to 128 (x = 88.72), n - 1 stays a normal exponent
            IntVector nBits = t.reinterpretAsInts().sub(ROUND_F_BITS);
            FloatVector scale = nBits.add(126).lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats();
            FloatVector e = p.mul(scale).mul(2f);
            e = e.blend(0f, x.lt(-86.5f));
            e = e.blend(Float.POSITIVE_INFINITY, x.compare(VectorOperators.GT, 88.72283f));
            e.blend(x, x.test(VectorOperators.IS_NAN)).intoArray(a, j);
        }
    }
}
