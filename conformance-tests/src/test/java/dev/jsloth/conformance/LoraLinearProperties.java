package dev.jsloth.conformance;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.autograd.Parameter;
import dev.jsloth.api.ops.LoraLinear;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.constraints.IntRange;

import java.util.SplittableRandom;

/** The LoRA linear operator's forward and backward on every backend against the unfused reference formulas. */
class LoraLinearProperties {

    @Provide
    Arbitrary<DType> computeTypes() {
        return Arbitraries.of(DType.F32, DType.F64);
    }

    @Property(tries = 60)
    void loraLinearMatchesUnfusedFormulas(@ForAll @IntRange(min = 1, max = 40) int n, @ForAll @IntRange(min = 1, max = 70) int in,
                                          @ForAll @IntRange(min = 1, max = 70) int out, @ForAll @IntRange(min = 1, max = 16) int r,
                                          @ForAll boolean withBias, @ForAll("computeTypes") DType dt, @ForAll long seed) {
        double s = LoraLinear.scaling(16, r, false);
        for (Backend be : BackendsUnderTest.all()) {
            SplittableRandom rnd = new SplittableRandom(seed);
            try (var x = TestData.random(be, dt, rnd, -1, 1, n, in); var w = TestData.random(be, dt, rnd, -1, 1, out, in);
                 var bias = TestData.random(be, dt, rnd, -1, 1, out); var a = TestData.random(be, dt, rnd, -1, 1, r, in);
                 var b = TestData.random(be, dt, rnd, -1, 1, out, r); var dy = TestData.random(be, dt, rnd, -1, 1, n, out)) {
                Parameter pa = new Parameter("A", a.tensor()), pb = new Parameter("B", b.tensor());
                LoraLinear layer = new LoraLinear(w.tensor(), withBias ? bias.tensor() : null, pa, pb, s);
                LoraLinear.Forward f = layer.forwardSaving(x.tensor());
                // Y = X W^T + b + s (X A^T) B^T, the reference builds B A explicitly
                double[] ba = Reference.gemm(false, false, 1, b.values(), out, r, a.values(), r, in, 0, null);
                double[] wEff = w.values().clone();
                for (int i = 0; i < wEff.length; i++) wEff[i] += s * ba[i];
                double[] y = Reference.gemm(false, true, 1, x.values(), n, in, wEff, out, in, 0, null);
                if (withBias) for (int i = 0; i < y.length; i++) y[i] += bias.values()[i % out];
                Compare.close(be.name() + " lora forward", y, be.download(f.y()), dt);
                try (Tensor dx = layer.backward(dy.tensor(), f.saved())) {
                    Compare.close(be.name() + " lora dX", Reference.gemm(false, false, 1, dy.values(), n, out, wEff, out, in, 0, null), be.download(dx), dt);
                    // dA = s B^T dY^T X, dB = s dY^T X A^T
                    double[] dyT_x = Reference.gemm(true, false, 1, dy.values(), n, out, x.values(), n, in, 0, null); // [out, in]
                    double[] dA = Reference.gemm(true, false, s, b.values(), out, r, dyT_x, out, in, 0, null);
                    double[] dB = Reference.gemm(false, true, s, dyT_x, out, in, a.values(), r, in, 0, null);
                    Compare.close(be.name() + " lora dA", dA, be.download(pa.grad()), dt);
                    Compare.close(be.name() + " lora dB", dB, be.download(pb.grad()), dt);
                } finally {
                    f.saved().close();
                    f.y().close();
                    pa.grad().close();
                    pb.grad().close();
                }
            }
        }
    }
}
