package dev.jsloth.conformance;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Tensor;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Example;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;

import java.util.SplittableRandom;

/** GEMM on every backend against the scalar reference, over awkward sizes, transposes, alpha/beta and dtypes. */
class GemmProperties {

    @Provide
    Arbitrary<Integer> sizes() {
        return Arbitraries.oneOf(Arbitraries.of(1, 2, 3, 5, 7, 8, 13, 16, 17, 31, 33, 64, 65, 97), Arbitraries.integers().between(1, 130));
    }

    /** Operand types: F16 too (every backend takes it; it was covered on OpenCL only). */
    @Provide
    Arbitrary<DType> storage() {
        return Arbitraries.of(DType.F32, DType.F64, DType.BF16, DType.F16);
    }

    @Property(tries = 150)
    void gemmMatchesReference(@ForAll("sizes") int m, @ForAll("sizes") int n, @ForAll("sizes") int k,
                              @ForAll boolean transA, @ForAll boolean transB,
                              @ForAll("storage") DType inputs, @ForAll boolean f64Output,
                              @ForAll("alphas") double alpha, @ForAll("betas") double beta, @ForAll long seed) {
        for (Backend be : BackendsUnderTest.all()) {
            DType out = f64Output ? DType.F64 : DType.F32;
            check(be, m, n, k, transA, transB, inputs, out, alpha, beta, seed);
        }
    }

    @Provide
    Arbitrary<Double> alphas() {
        return Arbitraries.of(1.0, -0.5, 2.0, 0.125);
    }

    @Provide
    Arbitrary<Double> betas() {
        return Arbitraries.of(0.0, 1.0, 0.5);
    }

    /** Lucene-style awkward sizes, including a long k crossing several KC blocks and a wide n crossing NC. */
    @Example
    void awkwardLargeSizes() {
        for (Backend be : BackendsUnderTest.all()) {
            check(be, 207, 13, 4098, false, true, DType.F32, DType.F32, 1.0, 0.0, 1);
            check(be, 13, 4098, 207, true, false, DType.F32, DType.F32, 1.0, 1.0, 2);
            check(be, 1, 4098, 13, false, false, DType.F32, DType.F32, 0.5, 0.0, 3);
            check(be, 67, 2100, 300, false, true, DType.BF16, DType.F32, 1.0, 0.0, 4);
            check(be, 33, 65, 513, true, true, DType.F64, DType.F64, 1.0, 0.5, 5);
        }
    }

    /** Batched GEMM: each batch entry equals a separate GEMM. */
    @Property(tries = 40)
    void batchedMatchesReference(@ForAll("smallSizes") int batch, @ForAll("sizes") int m, @ForAll("sizes") int n,
                                 @ForAll("smallSizes") int k, @ForAll boolean transA, @ForAll boolean transB, @ForAll long seed) {
        for (Backend be : BackendsUnderTest.all()) {
            for (DType dt : new DType[]{DType.F32, DType.F64}) {
                SplittableRandom r = new SplittableRandom(seed);
                int ar = transA ? k : m, ac = transA ? m : k, br = transB ? n : k, bc = transB ? k : n;
                try (var a = TestData.random(be, dt, r, -1, 1, batch, ar, ac);
                     var b = TestData.random(be, dt, r, -1, 1, batch, br, bc);
                     var c = TestData.random(be, dt, r, -1, 1, batch, m, n)) {
                    be.kernels().gemmBatched(transA, transB, 0.75, a.tensor(), b.tensor(), 0.5, c.tensor());
                    double[] got = be.download(c.tensor());
                    for (int i = 0; i < batch; i++) {
                        double[] ea = java.util.Arrays.copyOfRange(a.values(), i * ar * ac, (i + 1) * ar * ac);
                        double[] eb = java.util.Arrays.copyOfRange(b.values(), i * br * bc, (i + 1) * br * bc);
                        double[] ec = java.util.Arrays.copyOfRange(c.values(), i * m * n, (i + 1) * m * n);
                        double[] want = Reference.gemm(transA, transB, 0.75, ea, ar, ac, eb, br, bc, 0.5, ec);
                        Compare.close(be.name() + " batched gemm #" + i, want, java.util.Arrays.copyOfRange(got, i * m * n, (i + 1) * m * n), dt);
                    }
                }
            }
        }
    }

    /**
     * A product plus a low-rank one into the same C (LoRA's forward and dX): against the reference of both, every
     * rank from 1 to past two 32-column slices, both transposes, L's own transpose (stacked LoRA's rank-r products are
     * kept {@code [r, tokens]}) or A's, BF16 and F32 storage, beta 0 (C ignored), 1 and 0.5.
     */
    @Property(tries = 80)
    void gemmPlusLowRankMatchesReference(@ForAll("sizes") int m, @ForAll("sizes") int n, @ForAll("sizes") int k,
                                         @ForAll("ranks") int rank, @ForAll boolean transA, @ForAll boolean transB,
                                         @ForAll boolean transL, @ForAll("lowRankStorage") DType in, @ForAll("betas") double beta,
                                         @ForAll long seed) {
        for (Backend be : BackendsUnderTest.all()) {
            for (DType out : in == DType.BF16 ? new DType[]{DType.F32, DType.BF16} : new DType[]{DType.F32}) {
                SplittableRandom r = new SplittableRandom(seed);
                int ar = transA ? k : m, ac = transA ? m : k, br = transB ? n : k, bc = transB ? k : n;
                int lr = transL ? rank : m, lc = transL ? m : rank, rr = transB ? n : rank, rc = transB ? rank : n;
                try (var a = TestData.random(be, in, r, -1, 1, ar, ac); var b = TestData.random(be, in, r, -1, 1, br, bc);
                     var l = TestData.random(be, in, r, -1, 1, lr, lc); var rt = TestData.random(be, in, r, -1, 1, rr, rc);
                     var c = TestData.random(be, out, r, -1, 1, m, n)) {
                    if (beta == 0) be.kernels().fill(c.tensor(), Double.NaN);
                    if (transL == transA) // the form without L's own transpose
                        be.kernels().gemmPlusLowRank(transA, transB, 1.0, a.tensor(), b.tensor(), 2.0, l.tensor(), rt.tensor(), beta, c.tensor());
                    else be.kernels().gemmPlusLowRank(transA, transB, 1.0, a.tensor(), b.tensor(), 2.0, l.tensor(), transL, rt.tensor(), beta, c.tensor());
                    double[] low = Reference.gemm(transL, transB, 2.0, l.values(), lr, lc, rt.values(), rr, rc, beta, c.values());
                    double[] want = Reference.gemm(transA, transB, 1.0, a.values(), ar, ac, b.values(), br, bc, 1.0, low);
                    Compare.close(String.format("%s gemm+lowrank m=%d n=%d k=%d r=%d ta=%b tb=%b tl=%b %s->%s beta=%s", be.name(), m, n, k,
                            rank, transA, transB, transL, in, out, beta), want, be.download(c.tensor()), out);
                }
            }
        }
    }

    /**
     * A product (with a low-rank one, or without) plus a residual input into a separate output (Llama's o and down
     * projections): D against the reference, and the residual input left as it was. D starts as NaN (it is written,
     * never read).
     */
    @Property(tries = 40)
    void gemmPlusLowRankAddingMatchesReference(@ForAll("sizes") int m, @ForAll("sizes") int n, @ForAll("sizes") int k,
                                               @ForAll("ranks") int rank, @ForAll boolean withPair, @ForAll boolean transB,
                                               @ForAll("lowRankStorage") DType dt, @ForAll long seed) {
        for (Backend be : BackendsUnderTest.all()) {
            SplittableRandom r = new SplittableRandom(seed);
            int br = transB ? n : k, bc = transB ? k : n, rr = transB ? n : rank, rc = transB ? rank : n;
            try (var a = TestData.random(be, dt, r, -1, 1, m, k); var b = TestData.random(be, dt, r, -1, 1, br, bc);
                 var l = TestData.random(be, dt, r, -1, 1, m, rank); var rt = TestData.random(be, dt, r, -1, 1, rr, rc);
                 var c = TestData.random(be, dt, r, -1, 1, m, n); var d = TestData.random(be, dt, r, -1, 1, m, n)) {
                be.kernels().fill(d.tensor(), Double.NaN);
                be.kernels().gemmPlusLowRankAdding(false, transB, 1.0, a.tensor(), b.tensor(), 2.0, withPair ? l.tensor() : null,
                        withPair ? rt.tensor() : null, c.tensor(), d.tensor());
                double[] low = withPair ? Reference.gemm(false, transB, 2.0, l.values(), m, rank, rt.values(), rr, rc, 1.0, c.values())
                        : c.values();
                double[] want = Reference.gemm(false, transB, 1.0, a.values(), m, k, b.values(), br, bc, 1.0, low);
                String what = String.format("%s gemm+lowrank+C m=%d n=%d k=%d r=%s tb=%b %s", be.name(), m, n, k,
                        withPair ? rank : "-", transB, dt);
                Compare.close(what, want, be.download(d.tensor()), dt);
                org.junit.jupiter.api.Assertions.assertArrayEquals(c.values(), be.download(c.tensor()), what + ": C changed");
            }
        }
    }

    /** A residual input of the wrong size is refused before D is written, on every backend. */
    @net.jqwik.api.Example
    void gemmPlusLowRankAddingRefusesAMisfitResidualBeforeWriting() {
        for (Backend be : BackendsUnderTest.all()) {
            SplittableRandom r = new SplittableRandom(7);
            try (var a = TestData.random(be, DType.F32, r, -1, 1, 5, 4); var b = TestData.random(be, DType.F32, r, -1, 1, 3, 4);
                 var c = TestData.random(be, DType.F32, r, -1, 1, 5, 2); var d = TestData.random(be, DType.F32, r, -1, 1, 5, 3)) {
                IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                        () -> be.kernels().gemmPlusLowRankAdding(false, true, 1.0, a.tensor(), b.tensor(), 1.0, null, null, c.tensor(), d.tensor()));
                org.junit.jupiter.api.Assertions.assertTrue(e.getMessage().contains("residual"), be.name() + ": " + e.getMessage());
                org.junit.jupiter.api.Assertions.assertArrayEquals(d.values(), be.download(d.tensor()), be.name() + ": D written");
            }
        }
    }

    @Provide
    Arbitrary<Integer> ranks() {
        return Arbitraries.oneOf(Arbitraries.of(1, 8, 16, 32, 33, 64, 65), Arbitraries.integers().between(1, 70));
    }

    @Provide
    Arbitrary<DType> lowRankStorage() {
        return Arbitraries.of(DType.F32, DType.BF16);
    }

    @Provide
    Arbitrary<Integer> smallSizes() {
        return Arbitraries.integers().between(1, 9);
    }

    static void check(Backend be, int m, int n, int k, boolean ta, boolean tb, DType in, DType out, double alpha, double beta, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
        try (var a = TestData.random(be, in, r, -1, 1, ar, ac);
             var b = TestData.random(be, in, r, -1, 1, br, bc);
             var c = TestData.random(be, out, r, -1, 1, m, n)) {
            if (beta == 0) be.kernels().fill(c.tensor(), Double.NaN); // beta = 0 must ignore C entirely
            be.kernels().gemm(ta, tb, alpha, a.tensor(), b.tensor(), beta, c.tensor());
            double[] want = Reference.gemm(ta, tb, alpha, a.values(), ar, ac, b.values(), br, bc, beta, c.values());
            Compare.close(String.format("%s gemm m=%d n=%d k=%d ta=%b tb=%b %s->%s alpha=%s beta=%s", be.name(), m, n, k, ta, tb, in, out, alpha, beta),
                    want, be.download(c.tensor()), out);
        }
    }

    @Example
    void mismatchedShapesAreRejected() {
        Backend be = BackendsUnderTest.cpu();
        try (Tensor a = be.allocate(DType.F32, 3, 4); Tensor b = be.allocate(DType.F32, 5, 6); Tensor c = be.allocate(DType.F32, 3, 6)) {
            IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                    () -> be.kernels().gemm(false, false, 1, a, b, 0, c));
            org.junit.jupiter.api.Assertions.assertTrue(e.getMessage().contains("do not agree"), e.getMessage());
        }
    }
}
