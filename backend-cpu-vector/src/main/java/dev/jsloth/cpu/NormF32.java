package dev.jsloth.cpu;

import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * RMSNorm and rotary embedding for F32, BF16 and F16 tensors in single precision, rows in vector lanes ({@link NormKernels}
 * keeps the double-precision path for F64 tensors, which the gradient checks use, and for a norm whose weight gradient is
 * wanted). A row's sums (of squares; of {@code g * xhat}) are taken in double lanes from the widened values, as the double
 * path takes them; the rest is the double path's formulas in float, term for term.
 */
final class NormF32 {
    private static final VectorSpecies<Float> FV = VectorMath.FV;
    private static final VectorSpecies<Double> DV = VectorMath.DV;
    /** Double lanes per float vector: a float vector's products go into this many double vectors. */
    private static final int PARTS = FV.length() / DV.length();

    private NormF32() {
    }

    /** The same as {@link NormKernels#rmsNormForward}: {@code rstd = 1/sqrt(mean(x^2) + eps)}, {@code y = w * (x * rstd)}. */
    static void rmsNormForward(Buffer x, Buffer w, double eps, Buffer y, Buffer rstd, int n, int d) {
        float[] wv = new float[d];
        w.codec().readFloats(w.seg(), 0, wv, 0, d);
        Parallel.forRange(n, Math.max(1, 16384 / Math.max(1, d)), (lo, hi) -> {
            float[] row = new float[d];
            for (int i = lo; i < hi; i++) {
                long base = (long) i * d;
                x.codec().readFloats(x.seg(), base, row, 0, d);
                double r = 1.0 / Math.sqrt(dot(row, row, d) / d + eps);
                float rf = (float) r;
                int j = 0;
                if (Float.isFinite(rf) && (rf != 0 || r == 0)) {
                    for (int end = FV.loopBound(d); j < end; j += FV.length())
                        FloatVector.fromArray(FV, row, j).mul(rf).mul(FloatVector.fromArray(FV, wv, j)).intoArray(row, j);
                    for (; j < d; j++) row[j] = wv[j] * (row[j] * rf);
                } else { // rstd past float's range (a row of subnormals with eps 0): the products in double
                    for (; j < d; j++) row[j] = (float) (wv[j] * (row[j] * r));
                }
                y.codec().writeFloats(y.seg(), base, row, 0, d);
                rstd.set(i, r);
            }
        });
    }

    /**
     * The same as {@link NormKernels#rmsNormBackward} without a weight gradient: {@code xhat = x * rstd},
     * {@code g = dy * w}, {@code dx = rstd * (g - xhat * mean(g * xhat))}, plus the residual's row where it is non-null.
     */
    static void rmsNormBackward(Buffer dy, Buffer x, Buffer w, Buffer rstd, Buffer residual, Buffer dx, int n, int d) {
        float[] wv = new float[d];
        w.codec().readFloats(w.seg(), 0, wv, 0, d);
        Parallel.forRange(n, Math.max(1, 16384 / Math.max(1, d)), (lo, hi) -> {
            float[] g = new float[d], xh = new float[d], res = residual == null ? null : new float[d];
            for (int i = lo; i < hi; i++) {
                long base = (long) i * d;
                dy.codec().readFloats(dy.seg(), base, g, 0, d);
                x.codec().readFloats(x.seg(), base, xh, 0, d);
                float r = (float) rstd.get(i);
                int j = 0;
                for (int end = FV.loopBound(d); j < end; j += FV.length()) {
                    FloatVector.fromArray(FV, xh, j).mul(r).intoArray(xh, j);
                    FloatVector.fromArray(FV, g, j).mul(FloatVector.fromArray(FV, wv, j)).intoArray(g, j);
                }
                for (; j < d; j++) {
                    xh[j] *= r;
                    g[j] *= wv[j];
                }
                float mean = (float) (dot(g, xh, d) / d);
                if (res != null) residual.codec().readFloats(residual.seg(), base, res, 0, d);
                j = 0;
                for (int end = FV.loopBound(d); j < end; j += FV.length()) {
                    FloatVector v = FloatVector.fromArray(FV, g, j).sub(FloatVector.fromArray(FV, xh, j).mul(mean)).mul(r);
                    if (res != null) v = v.add(FloatVector.fromArray(FV, res, j));
                    v.intoArray(g, j);
                }
                for (; j < d; j++) {
                    g[j] = r * (g[j] - xh[j] * mean);
                    if (res != null) g[j] += res[j];
                }
                dx.codec().writeFloats(dx.seg(), base, g, 0, d);
            }
        });
    }

    /** The same as {@link NormKernels#rope}, in place. */
    static void rope(Buffer x, Buffer cos, Buffer sin, int n, int heads, int headDim, boolean inverse) {
        int half = headDim / 2, width = heads * headDim;
        float sign = inverse ? -1f : 1f;
        Parallel.forRange(n, Math.max(1, 16384 / Math.max(1, width)), (lo, hi) -> {
            float[] row = new float[width], c = new float[half], s = new float[half];
            for (int t = lo; t < hi; t++) {
                cos.codec().readFloats(cos.seg(), (long) t * half, c, 0, half);
                sin.codec().readFloats(sin.seg(), (long) t * half, s, 0, half);
                for (int i = 0; i < half; i++) s[i] *= sign;
                long base = (long) t * width;
                x.codec().readFloats(x.seg(), base, row, 0, width);
                for (int h = 0; h < heads; h++) {
                    int o = h * headDim, i = 0;
                    for (int end = FV.loopBound(half); i < end; i += FV.length()) {
                        FloatVector x1 = FloatVector.fromArray(FV, row, o + i), x2 = FloatVector.fromArray(FV, row, o + half + i);
                        FloatVector cv = FloatVector.fromArray(FV, c, i), sv = FloatVector.fromArray(FV, s, i);
                        x1.mul(cv).sub(x2.mul(sv)).intoArray(row, o + i);
                        x2.mul(cv).add(x1.mul(sv)).intoArray(row, o + half + i);
                    }
                    for (; i < half; i++) {
                        float x1 = row[o + i], x2 = row[o + half + i];
                        row[o + i] = x1 * c[i] - x2 * s[i];
                        row[o + half + i] = x2 * c[i] + x1 * s[i];
                    }
                }
                x.codec().writeFloats(x.seg(), base, row, 0, width);
            }
        });
    }

    /**
     * {@code a . b} over [0, n) in double: each float lane widened to double before it is multiplied (no float product
     * to overflow or underflow: a 2e19 or a 1e-23 squares as in the double path), the lanes then added in a fixed order
     * (the same result in every JIT tier).
     */
    private static double dot(float[] a, float[] b, int n) {
        DoubleVector acc = DoubleVector.zero(DV);
        int j = 0;
        for (int end = FV.loopBound(n); j < end; j += FV.length()) {
            FloatVector x = FloatVector.fromArray(FV, a, j), y = FloatVector.fromArray(FV, b, j);
            for (int part = 0; part < PARTS; part++)
                acc = ((DoubleVector) x.convertShape(VectorOperators.F2D, DV, part)).fma((DoubleVector) y.convertShape(VectorOperators.F2D, DV, part), acc);
        }
        double s = VectorMath.sumLanesInOrder(acc);
        for (; j < n; j++) s += (double) a[j] * b[j];
        return s;
    }
}
