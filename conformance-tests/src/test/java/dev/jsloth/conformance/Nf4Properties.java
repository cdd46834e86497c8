package dev.jsloth.conformance;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.autograd.Parameter;
import dev.jsloth.api.gradcheck.GradCheck;
import dev.jsloth.api.ops.LoraLinear;
import dev.jsloth.api.quant.DynamicMap;
import dev.jsloth.api.quant.Nf4;
import dev.jsloth.api.quant.Nf4Weight;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Example;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.constraints.IntRange;

import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** NF4 quantization semantics, NF4 GEMM operands on every backend, and the QLoRA LoRA-linear gradient. */
class Nf4Properties {

    static float[] randomWeights(SplittableRandom r, int n) {
        float[] w = new float[n];
        for (int i = 0; i < n; i++) w[i] = (float) (r.nextGaussian() * 0.05 * (1 + (i / 64) % 3));
        return w;
    }

    /** The half-gap around x's nearest code: the largest rounding error nearest-code quantization can make. */
    static double halfGap(double x) {
        float[] c = Nf4.CODE;
        for (int i = 0; i + 1 < c.length; i++) if (x <= c[i + 1]) return (c[i + 1] - c[i]) / 2.0;
        return (c[15] - c[14]) / 2.0;
    }

    @Property(tries = 100)
    void quantizeDequantizeErrorIsWithinHalfACodeGap(@ForAll @IntRange(min = 1, max = 700) int halfN, @ForAll boolean doubleQuant, @ForAll long seed) {
        int n = 2 * halfN;
        float[] w = randomWeights(new SplittableRandom(seed), n);
        Nf4Weight q = Nf4.quantize(w, doubleQuant);
        float[] d = q.dequantize();
        float[] scales = q.blockScales();
        for (int i = 0; i < n; i++) {
            double absmax = q.absmax()[i / Nf4.BLOCK];
            double x = absmax == 0 ? 0 : w[i] / absmax;
            double bound = halfGap(x) * absmax * (1 + 1e-6) + 1e-12;
            // double quantization reconstructs the scale approximately: that error scales with |code| <= 1
            if (doubleQuant) bound += Math.abs(absmax - scales[i / Nf4.BLOCK]);
            assertTrue(Math.abs(w[i] - d[i]) <= bound, "element " + i + ": " + w[i] + " -> " + d[i] + " (bound " + bound + ")");
        }
    }

    @Example
    void packingAndTiesFollowBitsandbytes() {
        // one block: absmax 1; values exactly on the first threshold go to the lower code; first element high nibble
        float t0 = (float) ((-1.0 + -0.6961928009986877) / 2);
        float[] w = new float[64];
        w[0] = 1.0f;       // code 15
        w[1] = t0;         // tie -> code 0
        w[2] = 0.0f;       // code 7
        w[3] = -1.0f;      // code 0
        Nf4Weight q = Nf4.quantize(w, false);
        assertEquals((byte) 0xF0, q.packed()[0]);
        assertEquals((byte) 0x70, q.packed()[1]);
        assertEquals(1.0f, q.absmax()[0]);
    }

    @Example
    void dynamicMapHasTheBitsandbytesStructure() {
        float[] m = DynamicMap.SIGNED;
        assertEquals(256, m.length);
        for (int i = 1; i < m.length; i++) assertTrue(m[i - 1] <= m[i]);
        assertEquals(1.0f, m[255]);
        assertTrue(java.util.Arrays.binarySearch(m, 0f) >= 0);
        // the smallest magnitudes are 10^-6 * 0.55 (the single midpoint of linspace(0.1, 1, 2))
        assertEquals(0.55e-6f, m[128], 1e-12f);
    }

    /**
     * Scales kept double-quantized on a device (several nested blocks of 256 scales, the last one partial)
     * dequantize to exactly the host's float32 values, on every backend, downloaded and as a GEMM operand.
     */
    @Example
    void doubleQuantizedScalesReconstructExactlyAcrossNestedBlocks() {
        int out = 640, in = 130; // 83,200 elements: 1,300 blocks of 64, 6 nested blocks (the last one partial)
        SplittableRandom r = new SplittableRandom(20261201);
        Nf4Weight q = Nf4.quantize(randomWeights(r, out * in), true);
        float[] want = q.dequantize();
        for (Backend be : BackendsUnderTest.all()) {
            try (Tensor w = be.uploadNf4(Shape.of(out, in), MemorySegment.ofArray(q.packed()), q.scales())) {
                double[] got = be.download(w);
                for (int i = 0; i < want.length; i++)
                    if (got[i] != want[i]) throw new AssertionError(be.name() + " element " + i + ": " + got[i] + " != " + want[i]);
                double[] wd = new double[want.length];
                for (int i = 0; i < wd.length; i++) wd[i] = want[i];
                int n = 3;
                try (var x = TestData.random(be, DType.F32, new SplittableRandom(7), -1, 1, n, in); Tensor y = be.allocate(DType.F32, n, out)) {
                    be.kernels().gemm(false, true, 1, x.tensor(), w, 0, y);
                    Compare.close(be.name() + " X W_nf4^T", Reference.gemm(false, true, 1, x.values(), n, in, wd, out, in, 0, null), be.download(y), DType.F32);
                }
            }
        }
    }

    @Property(tries = 40)
    void nf4WeightAsGemmOperandDequantizesExactly(@ForAll @IntRange(min = 1, max = 40) int n, @ForAll @IntRange(min = 1, max = 100) int halfIn,
                                                   @ForAll @IntRange(min = 1, max = 70) int out, @ForAll boolean doubleQuant,
                                                   @ForAll("computeTypes") DType dt, @ForAll long seed) {
        int in = 2 * halfIn;
        SplittableRandom r = new SplittableRandom(seed);
        Nf4Weight q = Nf4.quantize(randomWeights(r, out * in), doubleQuant);
        float[] deq = q.dequantize();
        double[] wd = new double[deq.length];
        for (int i = 0; i < deq.length; i++) wd[i] = deq[i];
        for (Backend be : BackendsUnderTest.all()) {
            try (var x = TestData.random(be, dt, new SplittableRandom(seed + 1), -1, 1, n, in);
                 Tensor w = be.uploadNf4(Shape.of(out, in), MemorySegment.ofArray(q.packed()), q.scales());
                 Tensor y = be.allocate(dt, n, out); Tensor dy = be.upload(dt, Shape.of(n, out), TestData.uniform(r, n * out, -1, 1));
                 Tensor dx = be.allocate(dt, n, in)) {
                assertArrayEquals(wd, be.download(w), 0.0, be.name() + " NF4 download");
                be.kernels().gemm(false, true, 1, x.tensor(), w, 0, y);
                Compare.close(be.name() + " X W_nf4^T", Reference.gemm(false, true, 1, x.values(), n, in, wd, out, in, 0, null), be.download(y), dt);
                be.kernels().gemm(false, false, 1, dy, w, 0, dx);
                Compare.close(be.name() + " dY W_nf4", Reference.gemm(false, false, 1, be.download(dy), n, out, wd, out, in, 0, null), be.download(dx), dt);
            }
        }
    }

    /**
     * QLoRA's linear on every backend: an NF4 base weight inside the LoRA product (the fused base + adapter forward and
     * the dX / dA / dB backward the engine runs), against F64 formulas on the dequantized weight:
     * {@code Y = X W^T + s (X A^T) B^T}, {@code dX = dY W + s (dY B) A}, {@code dB = s dY^T (X A^T)},
     * {@code dA = s (dY B)^T X}.
     */
    @Property(tries = 30)
    void qloraLinearMatchesTheFormulasOnEveryBackend(@ForAll @IntRange(min = 1, max = 24) int n, @ForAll @IntRange(min = 1, max = 80) int halfIn,
                                                     @ForAll @IntRange(min = 1, max = 70) int out, @ForAll @IntRange(min = 1, max = 12) int rank,
                                                     @ForAll("computeTypes") DType dt, @ForAll long seed) {
        int in = 2 * halfIn;
        SplittableRandom r = new SplittableRandom(seed);
        Nf4Weight q = Nf4.quantize(randomWeights(r, out * in), seed % 2 == 0);
        float[] deq = q.dequantize();
        double[] wd = new double[deq.length];
        for (int i = 0; i < deq.length; i++) wd[i] = deq[i];
        double s = 0.5 + r.nextDouble() * 2;
        double[] xv = TestData.uniform(r, n * in, -1, 1), av = TestData.uniform(r, rank * in, -0.3, 0.3);
        double[] bv = TestData.uniform(r, out * rank, -0.3, 0.3), dyv = TestData.uniform(r, n * out, -1, 1);
        for (Backend be : BackendsUnderTest.all()) {
            try (var x = TestData.place(be, dt, Shape.of(n, in), xv); var dy = TestData.place(be, dt, Shape.of(n, out), dyv);
                 Tensor w = be.uploadNf4(Shape.of(out, in), MemorySegment.ofArray(q.packed()), q.scales());
                 Parameter a = new Parameter("A", be.upload(dt, Shape.of(rank, in), av));
                 Parameter b = new Parameter("B", be.upload(dt, Shape.of(out, rank), bv))) {
                double[] x64 = x.values(), dy64 = dy.values(), a64 = be.download(a.value()), b64 = be.download(b.value());
                double[] xa = Reference.gemm(false, true, 1, x64, n, in, a64, rank, in, 0, null);
                double[] want = Reference.gemm(false, true, 1, x64, n, in, wd, out, in, 0, null);
                double[] low = Reference.gemm(false, true, s, xa, n, rank, b64, out, rank, 0, null);
                for (int i = 0; i < want.length; i++) want[i] += low[i];
                double[] g = Reference.gemm(false, false, 1, dy64, n, out, b64, out, rank, 0, null);
                double[] dxWant = Reference.gemm(false, false, 1, dy64, n, out, wd, out, in, 0, null);
                double[] dxLow = Reference.gemm(false, false, s, g, n, rank, a64, rank, in, 0, null);
                for (int i = 0; i < dxWant.length; i++) dxWant[i] += dxLow[i];
                double[] dbWant = Reference.gemm(true, false, s, dy64, n, out, xa, n, rank, 0, null);
                double[] daWant = Reference.gemm(true, false, s, g, n, rank, x64, n, in, 0, null);
                LoraLinear layer = new LoraLinear(w, null, a, b, s);
                String tag = be.name() + " QLoRA linear " + n + "x" + in + "->" + out + " r" + rank;
                LoraLinear.Forward f = layer.forwardSaving(x.tensor());
                try (Tensor y = f.y(); LoraLinear.Saved saved = f.saved()) {
                    Compare.close(tag + " Y", want, be.download(y), dt);
                    a.zeroGrad();
                    b.zeroGrad();
                    try (Tensor dx = layer.backward(dy.tensor(), saved)) {
                        Compare.close(tag + " dX", dxWant, be.download(dx), dt);
                    }
                    Compare.close(tag + " dB", dbWant, be.download(b.grad()), dt);
                    Compare.close(tag + " dA", daWant, be.download(a.grad()), dt);
                }
            }
        }
    }

    @Provide
    Arbitrary<DType> computeTypes() {
        return Arbitraries.of(DType.F32, DType.F64);
    }

    /** QLoRA: gradients of A, B and X through the frozen, dequantized-on-the-fly NF4 weight. */
    @Example
    void qloraLinearGradientCheck() {
        Backend be = BackendsUnderTest.cpu();
        SplittableRandom r = new SplittableRandom(5);
        int n = 5, in = 64, out = 12, rank = 3;
        Nf4Weight q = Nf4.quantize(randomWeights(r, out * in), true);
        try (Tensor w = be.uploadNf4(Shape.of(out, in), MemorySegment.ofArray(q.packed()), q.scales());
             Tensor x = be.upload(DType.F64, Shape.of(n, in), TestData.uniform(r, n * in, -1, 1))) {
            Parameter a = new Parameter("A", be.upload(DType.F64, Shape.of(rank, in), TestData.uniform(r, rank * in, -0.3, 0.3)));
            Parameter b = new Parameter("B", be.upload(DType.F64, Shape.of(out, rank), TestData.uniform(r, out * rank, -0.3, 0.3)));
            LoraLinear layer = new LoraLinear(w, null, a, b, 2.0);
            GradCheck.Report report = GradCheck.check(new GradCheck.Function() {
                public List<GradCheck.Input> inputs() {
                    return List.of(new GradCheck.Input("x", x), new GradCheck.Input("A", a.value()), new GradCheck.Input("B", b.value()));
                }

                public Tensor forward() {
                    return layer.forward(x);
                }

                public List<Tensor> backward(Tensor dy) {
                    a.zeroGrad();
                    b.zeroGrad();
                    LoraLinear.Forward f = layer.forwardSaving(x);
                    f.y().close();
                    try (LoraLinear.Saved s = f.saved()) {
                        Tensor dx = layer.backward(dy, s);
                        Tensor ga = be.allocate(DType.F64, a.value().shape()), gb = be.allocate(DType.F64, b.value().shape());
                        be.kernels().copy(a.grad(), ga);
                        be.kernels().copy(b.grad(), gb);
                        return List.of(dx, ga, gb);
                    }
                }
            }, GradCheck.Options.defaults());
            System.out.println("[gradcheck] qlora linear (NF4 W)             max abs err " + report.maxAbsError());
            assertTrue(report.passed(), report.toString());
            a.close();
            b.close();
        }
    }
}
