package dev.jsloth.conformance;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.autograd.Parameter;
import dev.jsloth.api.autograd.ParameterBuffer;
import dev.jsloth.api.ops.LoraLinear;
import dev.jsloth.api.ops.SharedInputLora;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.constraints.IntRange;

import java.util.ArrayList;
import java.util.List;
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

    /**
     * The rank-r path's type ({@code Kernels#lowRankType}) never narrows the input's: F32 and F64 stay as they are, a BF16
     * input with F32 parameters runs in BF16 or F32; on the CPU reference in F32 (nothing of the adapter's path rounded).
     */
    @net.jqwik.api.Example
    void lowRankTypeNeverNarrowsTheInput() {
        for (Backend be : BackendsUnderTest.all()) {
            org.junit.jupiter.api.Assertions.assertEquals(DType.F32, be.kernels().lowRankType(DType.F32, DType.F32), be.name());
            org.junit.jupiter.api.Assertions.assertEquals(DType.F64, be.kernels().lowRankType(DType.F64, DType.F32), be.name());
            DType mixed = be.kernels().lowRankType(DType.BF16, DType.F32);
            org.junit.jupiter.api.Assertions.assertTrue(mixed == DType.BF16 || mixed == DType.F32, be.name() + ": " + mixed);
        }
        org.junit.jupiter.api.Assertions.assertEquals(DType.F32, BackendsUnderTest.cpu().kernels().lowRankType(DType.BF16, DType.F32));
    }

    /** The values as a tensor of type dt holds them (rounded by the CPU reference backend). */
    private static double[] asComputed(double[] values, DType dt) {
        Backend cpu = BackendsUnderTest.cpu();
        try (Tensor t = cpu.upload(dt, Shape.of(values.length), values)) {
            return cpu.download(t);
        }
    }

    @Provide
    Arbitrary<DType> inputTypes() {
        return Arbitraries.of(DType.F32, DType.F64, DType.BF16);
    }

    /**
     * Projections sharing an input with their A matrices stacked ({@link SharedInputLora}): every output, dX, each dA and
     * dB against the unfused formulas, at unequal ranks, a bias on some, and for a BF16 input F32 parameters with and
     * without a compute pass (the stacked A from the pass's copy, or a copy of its own).
     */
    @Property(tries = 40)
    void sharedInputLoraMatchesUnfusedFormulas(@ForAll @IntRange(min = 1, max = 40) int n, @ForAll @IntRange(min = 1, max = 70) int in,
                                               @ForAll @IntRange(min = 2, max = 3) int members, @ForAll("inputTypes") DType dt,
                                               @ForAll boolean computePass, @ForAll long seed) {
        DType params = dt == DType.BF16 ? DType.F32 : dt;
        for (Backend be : BackendsUnderTest.all()) {
            SplittableRandom rnd = new SplittableRandom(seed);
            int[] outs = new int[members], ranks = new int[members];
            for (int j = 0; j < members; j++) {
                outs[j] = 1 + rnd.nextInt(60);
                ranks[j] = 1 + rnd.nextInt(16);
            }
            List<AutoCloseable> open = new ArrayList<>();
            try {
                TestData.Placed x = keep(open, TestData.random(be, dt, rnd, -1, 1, n, in));
                List<TestData.Placed> w = new ArrayList<>(), bias = new ArrayList<>(), dy = new ArrayList<>(), a = new ArrayList<>(), b = new ArrayList<>();
                List<Parameter> order = new ArrayList<>();
                for (int j = 0; j < members; j++) {
                    w.add(keep(open, TestData.random(be, dt, rnd, -1, 1, outs[j], in)));
                    bias.add(j == 1 ? keep(open, TestData.random(be, dt, rnd, -1, 1, outs[j])) : null);
                    dy.add(keep(open, TestData.random(be, dt, rnd, -1, 1, n, outs[j])));
                    a.add(TestData.random(be, params, rnd, -1, 1, ranks[j], in)); // the buffer takes these over
                    b.add(TestData.random(be, params, rnd, -1, 1, outs[j], ranks[j]));
                }
                for (int j = 0; j < members; j++) order.add(new Parameter("A" + j, a.get(j).tensor()));
                for (int j = 0; j < members; j++) order.add(new Parameter("B" + j, b.get(j).tensor()));
                ParameterBuffer buf = keep(open, ParameterBuffer.of(order));
                List<LoraLinear> layers = new ArrayList<>();
                double[] s = new double[members];
                for (int j = 0; j < members; j++) {
                    s[j] = LoraLinear.scaling(16, ranks[j], j == 2);
                    layers.add(new LoraLinear(w.get(j).tensor(), bias.get(j) == null ? null : bias.get(j).tensor(),
                            buf.parameters().get(j), buf.parameters().get(members + j), s[j]));
                }
                ParameterBuffer.Stack stack = buf.stack(buf.parameters().subList(0, members));
                SharedInputLora group = new SharedInputLora(layers, stack);
                ParameterBuffer.ComputePass pass = computePass && params != dt ? buf.beginCompute(dt) : null;
                if (pass != null) open.add(pass);
                SharedInputLora.Forward f = group.forwardSaving(x.tensor());
                open.add(f.saved());
                for (Tensor y : f.ys()) open.add(y);
                List<Tensor> dys = new ArrayList<>();
                for (TestData.Placed d : dy) dys.add(d.tensor());
                Tensor dx = keep(open, group.backward(dys, f.saved()));
                double[] dxWant = new double[n * in], dxTerms = new double[n * in];
                // the products take the F32 parameters as the backend's rank-r path holds them
                // (Kernels#lowRankType: BF16 copies where a backend keeps the input's type, the F32 values on the CPU)
                DType rank = be.kernels().lowRankType(dt, params);
                for (int j = 0; j < members; j++) {
                    int out = outs[j], r = ranks[j];
                    double[] av = asComputed(a.get(j).values(), rank), bv = asComputed(b.get(j).values(), rank);
                    double[] ba = Reference.gemm(false, false, 1, bv, out, r, av, r, in, 0, null);
                    double[] wEff = w.get(j).values().clone();
                    for (int i = 0; i < wEff.length; i++) wEff[i] += s[j] * ba[i];
                    double[] y = Reference.gemm(false, true, 1, x.values(), n, in, wEff, out, in, 0, null);
                    if (bias.get(j) != null) for (int i = 0; i < y.length; i++) y[i] += bias.get(j).values()[i % out];
                    String what = be.name() + " stacked member " + j + " (" + dt + ", pass " + computePass + ")";
                    // each result held to the size of its terms (the formulas on absolute values): BF16 rounds the rank-r
                    // products on the way (G = s B^T dY^T among them), so a sum that cancels errs by a fraction of its
                    // terms; against the result alone 2 in ~10,000 BF16 cases went past 2% (at most 0.8% of the terms)
                    double[] wTerms = abs(w.get(j).values()), baTerms = Reference.gemm(false, false, 1, abs(bv), out, r, abs(av), r, in, 0, null);
                    for (int i = 0; i < wTerms.length; i++) wTerms[i] += Math.abs(s[j]) * baTerms[i];
                    double[] yTerms = Reference.gemm(false, true, 1, abs(x.values()), n, in, wTerms, out, in, 0, null);
                    if (bias.get(j) != null) for (int i = 0; i < yTerms.length; i++) yTerms[i] += Math.abs(bias.get(j).values()[i % out]);
                    Compare.closeToTerms(what + " forward", y, yTerms, be.download(f.ys().get(j)), dt);
                    double[] dxj = Reference.gemm(false, false, 1, dy.get(j).values(), n, out, wEff, out, in, 0, null);
                    double[] dxjTerms = Reference.gemm(false, false, 1, abs(dy.get(j).values()), n, out, wTerms, out, in, 0, null);
                    for (int i = 0; i < dxWant.length; i++) {
                        dxWant[i] += dxj[i];
                        dxTerms[i] += dxjTerms[i];
                    }
                    double[] dyT_x = Reference.gemm(true, false, 1, dy.get(j).values(), n, out, x.values(), n, in, 0, null);
                    double[] dyT_xTerms = Reference.gemm(true, false, 1, abs(dy.get(j).values()), n, out, abs(x.values()), n, in, 0, null);
                    Compare.closeToTerms(what + " dA", Reference.gemm(true, false, s[j], bv, out, r, dyT_x, out, in, 0, null),
                            Reference.gemm(true, false, Math.abs(s[j]), abs(bv), out, r, dyT_xTerms, out, in, 0, null),
                            be.download(buf.parameters().get(j).grad()), dt);
                    Compare.closeToTerms(what + " dB", Reference.gemm(false, true, s[j], dyT_x, out, in, av, r, in, 0, null),
                            Reference.gemm(false, true, Math.abs(s[j]), dyT_xTerms, out, in, abs(av), r, in, 0, null),
                            be.download(buf.parameters().get(members + j).grad()), dt);
                }
                Compare.closeToTerms(be.name() + " stacked dX (" + dt + ")", dxWant, dxTerms, be.download(dx), dt);
            } finally {
                for (int i = open.size() - 1; i >= 0; i--) {
                    try {
                        open.get(i).close();
                    } catch (Exception e) {
                        throw new RuntimeException(e);
                    }
                }
            }
        }
    }

    private static double[] abs(double[] v) {
        double[] out = new double[v.length];
        for (int i = 0; i < v.length; i++) out[i] = Math.abs(v[i]);
        return out;
    }

    private static <T extends AutoCloseable> T keep(List<AutoCloseable> open, T t) {
        open.add(t);
        return t;
    }
}
