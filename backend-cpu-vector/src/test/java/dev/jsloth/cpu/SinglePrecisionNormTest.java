package dev.jsloth.cpu;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.spi.Backends;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The single-precision RMSNorm ({@link NormF32}) on rows at the ends of F32's range, against the double path
 * ({@link NormKernels}, F64 tensors of the same values): its sums are taken from widened values, so squares of 2e19 or
 * 1e-25 neither overflow nor vanish (the conformance properties draw values in [-2, 2]).
 */
class SinglePrecisionNormTest {

    private static double[] norm(Backend be, DType dt, double[] x, double eps) {
        int d = x.length;
        double[] w = new double[d];
        for (int j = 0; j < d; j++) w[j] = 0.5 + j % 3;
        try (Tensor xt = be.upload(dt, Shape.of(1, d), x); Tensor wt = be.upload(dt, Shape.of(d), w);
             Tensor y = be.allocate(dt, 1, d); Tensor rstd = be.allocate(dt, 1)) {
            be.kernels().rmsNormForward(xt, wt, eps, y, rstd);
            return be.download(y);
        }
    }

    @Test
    void rowsAtTheEndsOfTheRangeMatchTheDoublePath() {
        try (Backend be = Backends.create("cpu")) {
            for (double scale : new double[]{2e19, 3e37, 1e-25, 1e-40}) {
                for (int d : new int[]{1, 5, 16, 37}) {
                    double[] x = new double[d];
                    for (int j = 0; j < d; j++) x[j] = (float) (scale * (j % 2 == 0 ? 1 : -0.75) * (1 + j / 8.0));
                    double eps = 0;
                    double[] single = norm(be, DType.F32, x, eps), dbl = norm(be, DType.F64, x, eps);
                    for (int j = 0; j < d; j++) {
                        assertTrue(Double.isFinite(single[j]), "scale " + scale + " d " + d + ": " + single[j]);
                        assertEquals((float) dbl[j], single[j], 4e-7 * Math.abs(dbl[j]), "scale " + scale + " d " + d + " j " + j);
                    }
                }
            }
        }
    }
}
