package dev.jsloth.conformance;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;

import java.util.SplittableRandom;

/** Random inputs placed on a backend, with the values as actually stored (after rounding to the dtype). */
final class TestData {
    private TestData() {
    }

    static double[] uniform(SplittableRandom r, int n, double lo, double hi) {
        double[] v = new double[n];
        for (int i = 0; i < n; i++) v[i] = r.nextDouble(lo, hi);
        return v;
    }

    /** A tensor and the values it holds. */
    record Placed(Tensor tensor, double[] values) implements AutoCloseable {
        @Override
        public void close() {
            tensor.close();
        }
    }

    static Placed place(Backend be, DType dt, Shape shape, double[] values) {
        Tensor t = be.upload(dt, shape, values);
        return new Placed(t, be.download(t));
    }

    /**
     * The type of the row statistics (log-sum-exp, per-row loss) for activations of type {@code dt}: F32 beside 16-bit
     * activations, as the engine keeps them (an lse rounded to 8 bits would put each probability off by up to ~50%).
     */
    static DType statsType(DType dt) {
        return dt.bits() < 32 ? DType.F32 : dt;
    }

    /** Uniform values in an {@code [n, d]} tensor whose first row is all zeros. */
    static Placed randomWithZeroRow(Backend be, DType dt, SplittableRandom r, double lo, double hi, int n, int d) {
        double[] v = uniform(r, n * d, lo, hi);
        java.util.Arrays.fill(v, 0, d, 0.0);
        return place(be, dt, Shape.of(n, d), v);
    }

    static Placed random(Backend be, DType dt, SplittableRandom r, double lo, double hi, int... dims) {
        Shape s = Shape.of(dims);
        return place(be, dt, s, uniform(r, Math.toIntExact(s.numel()), lo, hi));
    }
}
