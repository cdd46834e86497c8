package dev.jsloth.conformance;

import dev.jsloth.api.AdamWStep;
import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Kernels;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.ops.Dropout;
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
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Embedding, AdamW, elementwise maps, reductions and dtype conversion on every backend. */
class ElementwiseAndOptimizerProperties {

    @Provide
    Arbitrary<DType> computeTypes() {
        return Arbitraries.of(DType.F32, DType.F64);
    }

    /** The types activations are stored in: BF16 too (embedding and the elementwise maps run on bf16 activations). */
    @Provide
    Arbitrary<DType> activationTypes() {
        return Arbitraries.of(DType.F32, DType.F64, DType.BF16);
    }

    @Provide
    Arbitrary<DType> storageTypes() {
        return Arbitraries.of(DType.F32, DType.F64, DType.BF16, DType.F16);
    }

    @Property(tries = 50)
    void embedding(@ForAll @IntRange(min = 1, max = 50) int vocab, @ForAll @IntRange(min = 1, max = 70) int dim,
                   @ForAll @IntRange(min = 1, max = 40) int n, @ForAll("activationTypes") DType dt, @ForAll long seed) {
        for (Backend be : BackendsUnderTest.all()) {
            SplittableRandom r = new SplittableRandom(seed);
            int[] ids = new int[n];
            for (int i = 0; i < n; i++) ids[i] = r.nextInt(vocab);
            try (var table = TestData.random(be, dt, r, -1, 1, vocab, dim); Tensor idt = be.uploadInts(Shape.of(n), ids);
                 Tensor out = be.allocate(dt, n, dim); var dOut = TestData.random(be, dt, r, -1, 1, n, dim);
                 var dTable = TestData.random(be, dt, r, -1, 1, vocab, dim)) {
                be.kernels().embeddingForward(table.tensor(), idt, out);
                Compare.close(be.name() + " embedding", Reference.embedding(table.values(), dim, ids), be.download(out), dt);
                be.kernels().embeddingBackward(dOut.tensor(), idt, dTable.tensor());
                Compare.close(be.name() + " embedding backward", Reference.embeddingBackward(dOut.values(), dim, ids, dTable.values()),
                        be.download(dTable.tensor()), dt);
            }
        }
    }

    @Property(tries = 50)
    void adamw(@ForAll @IntRange(min = 1, max = 9000) int n, @ForAll @IntRange(min = 1, max = 1000) int step,
               @ForAll("computeTypes") DType dt, @ForAll long seed) {
        for (Backend be : BackendsUnderTest.all()) {
            SplittableRandom r = new SplittableRandom(seed);
            // hyper-parameters drawn too, so that a kernel with fixed ones, or without the decoupled decay (lr wd |p| up to
            // 0.25 here, where 1e-3 x 0.01 x 1 was under F32's tolerance), fails
            double lr = Math.exp(r.nextDouble(Math.log(1e-5), Math.log(0.5))), b1 = r.nextDouble(0.5, 0.99), b2 = r.nextDouble(0.9, 0.9999);
            double eps = Math.exp(r.nextDouble(Math.log(1e-8), Math.log(1e-3))), wd = r.nextInt(4) == 0 ? 0 : r.nextDouble(0, 0.5);
            try (var p = TestData.random(be, dt, r, -1, 1, n); var g = TestData.random(be, dt, r, -1, 1, n);
                 var m = TestData.random(be, dt, r, -0.1, 0.1, n); var v = TestData.random(be, dt, r, 0, 0.01, n)) {
                be.kernels().adamw(p.tensor(), g.tensor(), m.tensor(), v.tensor(), new AdamWStep(lr, b1, b2, eps, wd, step));
                double[][] want = Reference.adamw(p.values(), g.values(), m.values(), v.values(), lr, b1, b2, eps, wd, step);
                Compare.close(be.name() + " adamw param", want[0], be.download(p.tensor()), dt);
                Compare.close(be.name() + " adamw m", want[1], be.download(m.tensor()), dt);
                Compare.close(be.name() + " adamw v", want[2], be.download(v.tensor()), dt);
            }
        }
    }

    @Property(tries = 60)
    void elementwise(@ForAll @IntRange(min = 1, max = 60) int rows, @ForAll @IntRange(min = 1, max = 300) int cols,
                     @ForAll("activationTypes") DType dt, @ForAll long seed) {
        for (Backend be : BackendsUnderTest.all()) {
            Kernels k = be.kernels();
            SplittableRandom r = new SplittableRandom(seed);
            int n = rows * cols;
            try (var a = TestData.random(be, dt, r, -1, 1, rows, cols); var b = TestData.random(be, dt, r, -1, 1, rows, cols);
                 var bias = TestData.random(be, dt, r, -1, 1, cols); var acc = TestData.random(be, dt, r, -1, 1, cols);
                 Tensor out = be.allocate(dt, rows, cols)) {
                double[] av = a.values(), bv = b.values();
                k.add(a.tensor(), b.tensor(), out);
                double[] sum = new double[n];
                for (int i = 0; i < n; i++) sum[i] = av[i] + bv[i];
                Compare.close(be.name() + " add", sum, be.download(out), dt);
                // each op from the values the backend holds before it: in BF16 the earlier ops' roundings, carried in a
                // chain of references, outgrew the bound where a later sum cancels (sumRows, 2.8 against 2.74)
                sum = be.download(out);
                k.axpy(-0.5, a.tensor(), out);
                for (int i = 0; i < n; i++) sum[i] += -0.5 * av[i];
                Compare.close(be.name() + " axpy", sum, be.download(out), dt);
                sum = be.download(out);
                k.scale(out, 3.0);
                for (int i = 0; i < n; i++) sum[i] *= 3.0;
                Compare.close(be.name() + " scale", sum, be.download(out), dt);
                sum = be.download(out);
                k.addRowVector(out, bias.tensor());
                for (int i = 0; i < n; i++) sum[i] += bias.values()[i % cols];
                Compare.close(be.name() + " addRowVector", sum, be.download(out), dt);
                sum = be.download(out);
                k.sumRows(out, acc.tensor(), true);
                double[] colSum = acc.values().clone();
                for (int i = 0; i < n; i++) colSum[i % cols] += sum[i];
                Compare.close(be.name() + " sumRows", colSum, be.download(acc.tensor()), dt);
                double ss = 0;
                for (double v : av) ss += v * v;
                Compare.close(be.name() + " sumOfSquares", new double[]{ss}, new double[]{k.sumOfSquares(a.tensor())}, dt);
                k.fill(out, 0.25);
                double[] quarter = new double[n];
                java.util.Arrays.fill(quarter, 0.25);
                Compare.close(be.name() + " fill", quarter, be.download(out), dt);
            }
        }
    }

    /**
     * Dropout's mask kernel: element i kept exactly where {@link Dropout#keeps} says (its value copied as it is), else 0:
     * the same bits on every backend and storage type, in place too.
     */
    @Property(tries = 60)
    void dropoutMaskIsTheSameOnEveryBackend(@ForAll("storageTypes") DType dt, @ForAll @IntRange(min = 1, max = 5000) int n,
                                            @ForAll @IntRange(min = 0, max = 95) int percent, @ForAll long seed) {
        double p = percent / 100.0;
        int threshold = Dropout.threshold(p);
        for (Backend be : BackendsUnderTest.all()) {
            SplittableRandom r = new SplittableRandom(seed);
            try (var x = TestData.random(be, dt, r, -100, 100, n); Tensor out = be.allocate(dt, n)) {
                double[] want = new double[n];
                for (int i = 0; i < n; i++) want[i] = Dropout.keeps(seed, i, threshold) ? x.values()[i] : 0;
                be.kernels().dropoutMask(x.tensor(), p, seed, out);
                Compare.close(be.name() + " dropout mask " + dt + " p " + p, want, be.download(out), 0.0);
                be.kernels().dropoutMask(x.tensor(), p, seed, x.tensor());
                Compare.close(be.name() + " dropout mask in place " + dt + " p " + p, want, be.download(x.tensor()), 0.0);
            }
        }
    }

    /**
     * The kernels' form of the draw (a counter stepped by an add, splitmix64's last xor-shift left out) gives the
     * reference draw, for consecutive elements from any start.
     */
    @Property(tries = 200)
    void counterDrawsAreTheReferenceDraws(@ForAll long seed, @ForAll long start) {
        long z = Dropout.counter(seed, start);
        for (int j = 0; j < 64; j++, z = Dropout.next(z))
            assertEquals(Dropout.draw(seed, start + j), Dropout.drawAt(z), "element " + (start + j));
    }

    /** The masks keep about 1 - p of the elements, none at p = 0, and a bad probability or type is refused. */
    @Example
    void dropoutKeepsAboutOneMinusP() {
        int n = 200_000;
        for (double p : new double[]{0.0, 0.05, 0.1, 0.5, 0.9}) {
            int threshold = Dropout.threshold(p), kept = 0;
            for (int i = 0; i < n; i++) if (Dropout.keeps(12345L, i, threshold)) kept++;
            double fraction = kept / (double) n;
            // binomial: 5 standard deviations at most 0.0056 here
            assertEquals(1 - p, fraction, p == 0 ? 0.0 : 0.006, "p " + p);
        }
        for (Backend be : BackendsUnderTest.all()) {
            try (Tensor x = be.allocate(DType.F32, 8); Tensor y = be.allocate(DType.F64, 8)) {
                for (double bad : new double[]{-0.1, 1.0, Double.NaN})
                    assertThrows(IllegalArgumentException.class, () -> be.kernels().dropoutMask(x, bad, 1, x), be.name() + " p " + bad);
                assertThrows(IllegalArgumentException.class, () -> be.kernels().dropoutMask(x, 0.1, 1, y), be.name() + " F32 -> F64");
            }
        }
    }

    /** Conversion between storage types rounds to nearest even and widens exactly. */
    @Property(tries = 60)
    void copyConvertsBetweenStorageTypes(@ForAll("storageTypes") DType from, @ForAll("storageTypes") DType to,
                                         @ForAll @IntRange(min = 1, max = 5000) int n, @ForAll long seed) {
        for (Backend be : BackendsUnderTest.all()) {
            SplittableRandom r = new SplittableRandom(seed);
            try (var src = TestData.random(be, from, r, -100, 100, n); Tensor dst = be.allocate(to, n)) {
                be.kernels().copy(src.tensor(), dst);
                double[] got = be.download(dst);
                double[] want = new double[n];
                for (int i = 0; i < n; i++) want[i] = roundTo(to, src.values()[i]);
                Compare.close(be.name() + " copy " + from + "->" + to, want, got, 0.0);
            }
        }
    }

    static double roundTo(DType t, double v) {
        return switch (t) {
            case F64 -> v;
            case F32 -> (float) v;
            case F16 -> Float.float16ToFloat(Float.floatToFloat16((float) v));
            case BF16 -> bf16(v);
            default -> throw new IllegalArgumentException();
        };
    }

    /** bfloat16 rounding written independently of the backend: keep the float's upper 16 bits, ties to even. */
    static double bf16(double v) {
        float f = (float) v;
        int bits = Float.floatToIntBits(f);
        int lower = bits & 0xFFFF;
        int upper = bits & 0xFFFF0000;
        boolean roundUp = lower > 0x8000 || (lower == 0x8000 && (upper & 0x10000) != 0);
        return Float.intBitsToFloat(roundUp ? upper + 0x10000 : upper);
    }

    @Example
    void bf16RoundsToNearestEven() {
        Backend be = BackendsUnderTest.cpu();
        // 1 + 2^-8 lies exactly between two bf16 values (1 and 1 + 2^-7): ties go to the even one, 1.
        try (Tensor t = be.upload(DType.BF16, Shape.of(3), new double[]{1 + Math.pow(2, -8), 1 + 3 * Math.pow(2, -8), -2.5})) {
            double[] v = be.download(t);
            assertEquals(1.0, v[0]);
            assertEquals(1 + Math.pow(2, -6), v[1]);
            assertEquals(-2.5, v[2]);
        }
    }

    @Example
    void idsOutsideTheVocabularyAreRejected() {
        Backend be = BackendsUnderTest.cpu();
        try (Tensor table = be.allocate(DType.F32, 4, 3); Tensor ids = be.uploadInts(Shape.of(2), new int[]{0, 4});
             Tensor out = be.allocate(DType.F32, 2, 3)) {
            var e = assertThrows(IllegalArgumentException.class, () -> be.kernels().embeddingForward(table, ids, out));
            assertTrue(e.getMessage().contains("token id 4"), e.getMessage());
        }
    }
}
