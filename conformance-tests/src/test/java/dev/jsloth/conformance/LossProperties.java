package dev.jsloth.conformance;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.ops.CrossEntropy;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Example;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.constraints.IntRange;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** Cross-entropy kernels and the chunked, head-fused loss on every backend. */
class LossProperties {

    @Provide
    Arbitrary<DType> computeTypes() {
        return Arbitraries.of(DType.F32, DType.F64, DType.BF16);
    }

    @Provide
    Arbitrary<Integer> vocabs() { // crosses the CPU kernel's 4096-wide vocabulary chunks
        return Arbitraries.oneOf(Arbitraries.of(1, 2, 13, 4095, 4096, 4097, 9000), Arbitraries.integers().between(1, 600));
    }

    static int[] labels(SplittableRandom r, int n, int vocab) {
        int[] y = new int[n];
        for (int i = 0; i < n; i++) y[i] = r.nextInt(5) == 0 ? CrossEntropy.IGNORE_INDEX : r.nextInt(vocab);
        return y;
    }

    @Property(tries = 60)
    void crossEntropyKernels(@ForAll @IntRange(min = 1, max = 12) int n, @ForAll("vocabs") int vocab,
                             @ForAll("computeTypes") DType dt, @ForAll long seed) {
        for (Backend be : BackendsUnderTest.all()) {
            SplittableRandom r = new SplittableRandom(seed);
            int[] y = labels(r, n, vocab);
            // logits around +-200 at times: exp without subtracting the row's maximum overflows (F32) or loses everything
            double shift = new SplittableRandom(seed ^ 0xCE).nextInt(3) == 0 ? (seed % 2 == 0 ? 200 : -200) : 0;
            try (var logits = TestData.random(be, dt, r, shift - 8, shift + 8, n, vocab); Tensor lab = be.uploadInts(Shape.of(n), y);
                 Tensor loss = be.allocate(TestData.statsType(dt), n); Tensor lse = be.allocate(TestData.statsType(dt), n); Tensor d = be.allocate(dt, n, vocab)) {
                for (Tensor t : new Tensor[]{loss, lse, d}) be.kernels().fill(t, Double.NaN);
                be.kernels().crossEntropyForward(logits.tensor(), lab, CrossEntropy.IGNORE_INDEX, loss, lse);
                double[][] want = Reference.crossEntropy(logits.values(), y, CrossEntropy.IGNORE_INDEX, n, vocab);
                Compare.close(be.name() + " CE loss", want[0], be.download(loss), dt);
                Compare.close(be.name() + " CE lse", want[1], be.download(lse), dt);
                be.kernels().crossEntropyBackward(logits.tensor(), lab, lse, CrossEntropy.IGNORE_INDEX, 0.25, d);
                Compare.close(be.name() + " CE dlogits", Reference.crossEntropyBackward(logits.values(), y, CrossEntropy.IGNORE_INDEX, 0.25, n, vocab),
                        be.download(d), dt);
                // in place, as the fused loss uses it
                be.kernels().crossEntropyBackward(logits.tensor(), lab, lse, CrossEntropy.IGNORE_INDEX, 0.25, logits.tensor());
                Compare.close(be.name() + " CE dlogits in place", be.download(d), be.download(logits.tensor()), dt);
            }
        }
    }

    /**
     * Masked logits: -inf entries (a prefix of each row of random length, up to all but the last entry, and scattered
     * ones) add nothing to the log-sum-exp and get a zero gradient, on every backend. A kernel that starts its online
     * softmax from a -inf logit computes exp(-inf - -inf) = NaN (PoCL's did, for a -inf among a row's first 256).
     */
    @Property(tries = 40)
    void minusInfinityLogitsAddNothing(@ForAll @IntRange(min = 1, max = 8) int n, @ForAll("vocabs") int vocab,
                                       @ForAll("computeTypes") DType dt, @ForAll long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        double[] v = TestData.uniform(r, n * vocab, -8, 8);
        int[] y = new int[n];
        for (int i = 0; i < n; i++) {
            int prefix = r.nextInt(vocab); // 0 .. vocab - 1 entries, the last one always finite
            for (int c = 0; c < vocab; c++)
                if (c < prefix || (c < vocab - 1 && r.nextInt(5) == 0)) v[i * vocab + c] = Double.NEGATIVE_INFINITY;
            y[i] = r.nextInt(4) == 0 ? CrossEntropy.IGNORE_INDEX : vocab - 1; // a finite logit
        }
        for (Backend be : BackendsUnderTest.all()) {
            try (var logits = TestData.place(be, dt, Shape.of(n, vocab), v); Tensor lab = be.uploadInts(Shape.of(n), y);
                 Tensor loss = be.allocate(TestData.statsType(dt), n); Tensor lse = be.allocate(TestData.statsType(dt), n); Tensor d = be.allocate(dt, n, vocab)) {
                be.kernels().crossEntropyForward(logits.tensor(), lab, CrossEntropy.IGNORE_INDEX, loss, lse);
                double[][] want = Reference.crossEntropy(logits.values(), y, CrossEntropy.IGNORE_INDEX, n, vocab);
                Compare.close(be.name() + " CE loss, -inf logits", want[0], be.download(loss), dt);
                Compare.close(be.name() + " CE lse, -inf logits", want[1], be.download(lse), dt);
                be.kernels().crossEntropyBackward(logits.tensor(), lab, lse, CrossEntropy.IGNORE_INDEX, 0.5, d);
                Compare.close(be.name() + " CE dlogits, -inf logits", Reference.crossEntropyBackward(logits.values(), y, CrossEntropy.IGNORE_INDEX, 0.5, n, vocab),
                        be.download(d), dt);
            }
        }
    }

    @Property(tries = 40)
    void fusedHeadLossMatchesMaterialisedLogits(@ForAll @IntRange(min = 1, max = 40) int n, @ForAll @IntRange(min = 1, max = 50) int dim,
                                                @ForAll @IntRange(min = 1, max = 300) int vocab, @ForAll @IntRange(min = 1, max = 16) int chunk,
                                                @ForAll("computeTypes") DType dt, @ForAll long seed) {
        for (Backend be : BackendsUnderTest.all()) {
            SplittableRandom r = new SplittableRandom(seed);
            int[] y = labels(r, n, vocab);
            try (var h = TestData.random(be, dt, r, -1, 1, n, dim); var w = TestData.random(be, dt, r, -1, 1, vocab, dim)) {
                long counted = CrossEntropy.countTargets(y);
                double scale = counted == 0 ? 0 : 1.0 / counted;
                CrossEntropy.Result res = CrossEntropy.lmHead(h.tensor(), w.tensor(), y, true, scale, chunk);
                double[] logits = Reference.gemm(false, true, 1, h.values(), n, dim, w.values(), vocab, dim, 0, null);
                double[] loss = Reference.crossEntropy(logits, y, CrossEntropy.IGNORE_INDEX, n, vocab)[0];
                double sum = 0;
                for (double l : loss) sum += l;
                assertEquals(counted, res.counted());
                Compare.close(be.name() + " fused loss sum", new double[]{sum}, new double[]{res.lossSum()}, dt);
                double[] dl = Reference.crossEntropyBackward(logits, y, CrossEntropy.IGNORE_INDEX, scale, n, vocab);
                double[] dh = Reference.gemm(false, false, 1, dl, n, vocab, w.values(), vocab, dim, 0, null);
                try (Tensor got = res.dHidden()) {
                    Compare.close(be.name() + " fused dH", dh, be.download(got), dt);
                }
            }
        }
    }

    /** A fused loss that fails part way (a bad label in its second chunk) frees dH and its work buffers. */
    @Example
    void fusedHeadLossThatFailsLeavesNothingAlive() {
        Backend be = BackendsUnderTest.cpu();
        SplittableRandom r = new SplittableRandom(5);
        try (var h = TestData.random(be, DType.F32, r, -1, 1, 4, 3); var w = TestData.random(be, DType.F32, r, -1, 1, 5, 3)) {
            long live = be.memoryStats().liveTensors();
            var e = assertThrows(IllegalArgumentException.class,
                    () -> CrossEntropy.lmHead(h.tensor(), w.tensor(), new int[]{1, 2, 3, 9}, true, 0.25, 2));
            org.junit.jupiter.api.Assertions.assertTrue(e.getMessage().contains("label 9"), e.getMessage());
            assertEquals(live, be.memoryStats().liveTensors(), "tensors left alive by a failed fused loss");
        }
    }

    @Example
    void labelOutsideVocabularyIsAClearError() {
        Backend be = BackendsUnderTest.cpu();
        try (Tensor logits = be.allocate(DType.F32, 2, 5); Tensor lab = be.uploadInts(Shape.of(2), new int[]{1, 7});
             Tensor loss = be.allocate(DType.F32, 2); Tensor lse = be.allocate(DType.F32, 2)) {
            var e = assertThrows(IllegalArgumentException.class,
                    () -> be.kernels().crossEntropyForward(logits, lab, CrossEntropy.IGNORE_INDEX, loss, lse));
            org.junit.jupiter.api.Assertions.assertTrue(e.getMessage().contains("label 7 at row 1"), e.getMessage());
        }
    }
}
