package dev.jsloth.conformance;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Kernels;
import dev.jsloth.api.Tensor;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.constraints.IntRange;

import java.util.SplittableRandom;

/** RMSNorm, RoPE and SwiGLU forward and backward on every backend against the scalar reference. */
class NormAndActivationProperties {

    @Provide
    Arbitrary<DType> computeTypes() {
        return Arbitraries.of(DType.F32, DType.F64, DType.BF16);
    }

    @Provide
    Arbitrary<Integer> widths() {
        return Arbitraries.oneOf(Arbitraries.of(1, 2, 7, 8, 13, 16, 17, 64, 207), Arbitraries.integers().between(1, 300));
    }

    @Property(tries = 80)
    void rmsNorm(@ForAll @IntRange(min = 1, max = 40) int n, @ForAll("widths") int d, @ForAll("computeTypes") DType dt,
                 @ForAll boolean withWeightGrad, @ForAll long seed) {
        for (Backend be : BackendsUnderTest.all()) {
            Kernels k = be.kernels();
            SplittableRandom r = new SplittableRandom(seed);
            // eps drawn (a kernel that ignores it or fixes it fails where it matters: small rows, and a zero row, whose
            // output is 0 and rstd 1/sqrt(eps))
            double eps = new SplittableRandom(seed ^ 0xE95L).nextBoolean() ? 1e-5 : 0.5;
            boolean zeroRow = seed % 3 == 0;
            try (var x = zeroRow ? TestData.randomWithZeroRow(be, dt, r, -0.05, 0.05, n, d) : TestData.random(be, dt, r, -2, 2, n, d);
                 var w = TestData.random(be, dt, r, 0.5, 1.5, d);
                 var dy = TestData.random(be, dt, r, -1, 1, n, d); var dw0 = TestData.random(be, dt, r, -1, 1, d);
                 Tensor y = be.allocate(dt, n, d); Tensor rstd = be.allocate(dt, n); Tensor dx = be.allocate(dt, n, d)) {
                for (Tensor t : new Tensor[]{y, rstd, dx}) k.fill(t, Double.NaN);
                k.rmsNormForward(x.tensor(), w.tensor(), eps, y, rstd);
                double[][] want = Reference.rmsNorm(x.values(), w.values(), eps, n, d);
                Compare.close(be.name() + " rmsnorm y", want[0], be.download(y), dt);
                Compare.close(be.name() + " rmsnorm rstd", want[1], be.download(rstd), dt);
                k.rmsNormBackward(dy.tensor(), x.tensor(), w.tensor(), rstd, dx, withWeightGrad ? dw0.tensor() : null);
                double[][] grads = Reference.rmsNormBackward(dy.values(), x.values(), w.values(), eps, n, d);
                // dx = r w dy - x r^3 / d sum(w dy x): its two terms nearly cancel where eps is small beside x^2 (a narrow
                // row), and a 16-bit rstd errs by a fraction of the terms, not of dx: held to the terms there
                double[] terms = rmsNormDxTerms(x.values(), w.values(), dy.values(), eps, n, d);
                if (dt.bits() < 32) Compare.closeToTerms(be.name() + " rmsnorm dx", grads[0], terms, be.download(dx), dt);
                else Compare.close(be.name() + " rmsnorm dx", grads[0], be.download(dx), dt);
                if (withWeightGrad) {
                    double[] dwWant = grads[1].clone();
                    for (int j = 0; j < d; j++) dwWant[j] += dw0.values()[j];
                    Compare.close(be.name() + " rmsnorm dw (accumulated)", dwWant, be.download(dw0.tensor()), dt);
                }
                // with a residual branch's gradient added into dx (the input's two uses in a pre-norm block); dw, where
                // asked for, accumulates a second time
                try (var residual = TestData.random(be, dt, r, -1, 1, n, d)) {
                    double[] dwBefore = be.download(dw0.tensor());
                    k.fill(dx, Double.NaN);
                    k.rmsNormBackwardWithResidual(dy.tensor(), x.tensor(), w.tensor(), rstd, residual.tensor(), dx,
                            withWeightGrad ? dw0.tensor() : null);
                    double[] dxWant = grads[0].clone(), withResidual = terms.clone();
                    for (int i = 0; i < dxWant.length; i++) {
                        dxWant[i] += residual.values()[i];
                        withResidual[i] += Math.abs(residual.values()[i]);
                    }
                    if (dt.bits() < 32) Compare.closeToTerms(be.name() + " rmsnorm dx + residual", dxWant, withResidual, be.download(dx), dt);
                    else Compare.close(be.name() + " rmsnorm dx + residual", dxWant, be.download(dx), dt);
                    if (withWeightGrad) {
                        double[] dwWant = dwBefore.clone();
                        for (int j = 0; j < d; j++) dwWant[j] += grads[1][j];
                        Compare.close(be.name() + " rmsnorm dw (with residual, accumulated)", dwWant, be.download(dw0.tensor()), dt);
                    }
                }
            }
        }
    }

    @Property(tries = 80)
    void ropeForwardAndInverse(@ForAll @IntRange(min = 1, max = 30) int n, @ForAll @IntRange(min = 1, max = 6) int heads,
                               @ForAll @IntRange(min = 1, max = 40) int halfDim, @ForAll("computeTypes") DType dt,
                               @ForAll long seed) {
        int hd = 2 * halfDim;
        for (Backend be : BackendsUnderTest.all()) {
            SplittableRandom r = new SplittableRandom(seed);
            double[] angles = TestData.uniform(r, n * halfDim, -10, 10);
            double[] c = new double[angles.length], s = new double[angles.length];
            for (int i = 0; i < angles.length; i++) {
                c[i] = Math.cos(angles[i]);
                s[i] = Math.sin(angles[i]);
            }
            try (var x = TestData.random(be, dt, r, -2, 2, n, heads * hd);
                 var cos = TestData.place(be, dt, dev.jsloth.api.Shape.of(n, halfDim), c);
                 var sin = TestData.place(be, dt, dev.jsloth.api.Shape.of(n, halfDim), s)) {
                be.kernels().rope(x.tensor(), cos.tensor(), sin.tensor(), heads, false);
                double[] want = Reference.rope(x.values(), cos.values(), sin.values(), n, heads, hd, false);
                double[] got = be.download(x.tensor());
                Compare.close(be.name() + " rope", want, got, dt);
                be.kernels().rope(x.tensor(), cos.tensor(), sin.tensor(), heads, true);
                Compare.close(be.name() + " rope inverse", Reference.rope(got, cos.values(), sin.values(), n, heads, hd, true),
                        be.download(x.tensor()), dt);
            }
        }
    }

    /** |r w dy| + |x| r^3 / d sum |w dy x| per element: the sizes of the two terms of RMSNorm's dx. */
    static double[] rmsNormDxTerms(double[] x, double[] w, double[] dy, double eps, int n, int d) {
        double[] out = new double[n * d];
        for (int i = 0; i < n; i++) {
            double ms = 0, s = 0;
            for (int j = 0; j < d; j++) {
                ms += x[i * d + j] * x[i * d + j];
                s += Math.abs(w[j] * dy[i * d + j] * x[i * d + j]);
            }
            double r = 1 / Math.sqrt(ms / d + eps);
            for (int j = 0; j < d; j++)
                out[i * d + j] = r * Math.abs(w[j] * dy[i * d + j]) + Math.abs(x[i * d + j]) * r * r * r / d * s;
        }
        return out;
    }

    @Property(tries = 80)
    void swiglu(@ForAll @IntRange(min = 1, max = 5000) int numel, @ForAll("computeTypes") DType dt, @ForAll long seed) {
        for (Backend be : BackendsUnderTest.all()) {
            Kernels k = be.kernels();
            SplittableRandom r = new SplittableRandom(seed);
            try (var g = TestData.random(be, dt, r, -6, 6, numel); var u = TestData.random(be, dt, r, -2, 2, numel);
                 var d = TestData.random(be, dt, r, -1, 1, numel); Tensor out = be.allocate(dt, numel);
                 Tensor dg = be.allocate(dt, numel); Tensor du = be.allocate(dt, numel)) {
                for (Tensor t : new Tensor[]{out, dg, du}) k.fill(t, Double.NaN); // written, not added to
                k.swigluForward(g.tensor(), u.tensor(), out);
                Compare.close(be.name() + " swiglu", Reference.swiglu(g.values(), u.values()), be.download(out), dt);
                k.swigluBackward(d.tensor(), g.tensor(), u.tensor(), dg, du);
                double[][] want = Reference.swigluBackward(d.values(), g.values(), u.values());
                Compare.close(be.name() + " swiglu dgate", want[0], be.download(dg), dt);
                Compare.close(be.name() + " swiglu dup", want[1], be.download(du), dt);
            }
        }
    }
}
