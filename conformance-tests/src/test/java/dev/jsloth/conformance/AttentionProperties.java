package dev.jsloth.conformance;

import dev.jsloth.api.AttentionDims;
import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.constraints.IntRange;

import java.util.SplittableRandom;

/** Causal GQA attention, with and without packed-sequence segments, on every backend. */
class AttentionProperties {

    @Provide
    Arbitrary<DType> computeTypes() {
        return Arbitraries.of(DType.F32, DType.F64, DType.BF16);
    }

    @Provide
    Arbitrary<int[]> heads() { // {qHeads, kvHeads}: MHA, GQA ratios 2, 3, 4, and MQA
        return Arbitraries.of(new int[]{1, 1}, new int[]{2, 2}, new int[]{4, 2}, new int[]{6, 2}, new int[]{4, 1}, new int[]{8, 2}, new int[]{3, 1});
    }

    @Property(tries = 60)
    void attentionForwardAndBackward(@ForAll @IntRange(min = 1, max = 2) int batch, @ForAll @IntRange(min = 1, max = 17) int seq,
                                     @ForAll("heads") int[] heads, @ForAll @IntRange(min = 1, max = 9) int halfDim,
                                     @ForAll boolean packed, @ForAll("computeTypes") DType dt, @ForAll long seed) {
        checkForwardAndBackward(batch, seq, heads, halfDim, packed, dt, seed);
    }

    /** Sequences over several of the CPU kernel's 32-query blocks (and GPU tiles of 16-64 rows). */
    @Property(tries = 12)
    void attentionAcrossQueryBlocks(@ForAll @IntRange(min = 33, max = 80) int seq, @ForAll("heads") int[] heads,
                                    @ForAll @IntRange(min = 1, max = 9) int halfDim, @ForAll boolean packed,
                                    @ForAll("computeTypes") DType dt, @ForAll long seed) {
        checkForwardAndBackward(1, seq, heads, halfDim, packed, dt, seed);
    }

    /**
     * Head dimensions of real models' size (64, 128) and ones past a whole number of the CPU kernel's column panels (32
     * floats with 512-bit vectors, 16 with 256-bit): whole panels and a partial last one in the same product.
     */
    @Property(tries = 8)
    void attentionAtWideHeads(@ForAll @IntRange(min = 1, max = 70) int seq, @ForAll("heads") int[] heads,
                              @ForAll("wideHalfDims") int halfDim, @ForAll boolean packed, @ForAll("computeTypes") DType dt,
                              @ForAll long seed) {
        checkForwardAndBackward(1, seq, heads, halfDim, packed, dt, seed);
    }

    @Provide
    Arbitrary<Integer> wideHalfDims() {
        return Arbitraries.of(16, 20, 32, 64);
    }

    private static void checkForwardAndBackward(int batch, int seq, int[] heads, int halfDim, boolean packed, DType dt, long seed) {
        int hq = heads[0], hkv = heads[1], hd = 2 * halfDim;
        AttentionDims d = new AttentionDims(batch, seq, hq, hkv, hd);
        // the scale drawn too: a kernel that ignores it fails, and at 8 / sqrt(hd) scores reach a few hundred, where an
        // exp without the running maximum overflows F32
        int pick = new SplittableRandom(seed ^ 0x5CA1EL).nextInt(3);
        double scale = (pick == 0 ? 8.0 : pick == 1 ? 0.3 : 1.0) / Math.sqrt(hd);
        for (Backend be : BackendsUnderTest.all()) {
            SplittableRandom r = new SplittableRandom(seed);
            int[] seg = null;
            if (packed) {
                seg = new int[batch * seq];
                for (int b = 0; b < batch; b++) {
                    int id = 0;
                    for (int t = 0; t < seq; t++) {
                        if (t > 0 && r.nextInt(4) == 0) id++;
                        seg[b * seq + t] = id;
                    }
                }
            }
            try (var q = TestData.random(be, dt, r, -2, 2, batch, seq, hq, hd);
                 var k = TestData.random(be, dt, r, -2, 2, batch, seq, hkv, hd);
                 var v = TestData.random(be, dt, r, -1, 1, batch, seq, hkv, hd);
                 var dOut = TestData.random(be, dt, r, -1, 1, batch, seq, hq, hd);
                 Tensor segments = seg == null ? null : be.uploadInts(Shape.of(batch, seq), seg);
                 Tensor out = be.allocate(dt, batch, seq, hq, hd); Tensor lse = be.allocate(TestData.statsType(dt), batch, hq, seq);
                 Tensor dq = be.allocate(dt, batch, seq, hq, hd); Tensor dk = be.allocate(dt, batch, seq, hkv, hd);
                 Tensor dv = be.allocate(dt, batch, seq, hkv, hd)) {
                for (Tensor t : new Tensor[]{out, lse, dq, dk, dv}) be.kernels().fill(t, Double.NaN); // outputs are written, not added to
                be.kernels().attentionForward(d, q.tensor(), k.tensor(), v.tensor(), segments, scale, out, lse);
                double[][] want = Reference.attention(batch, seq, hq, hkv, hd, q.values(), k.values(), v.values(), seg, scale);
                String tag = be.name() + " attention " + d + (packed ? " packed" : "");
                Compare.close(tag + " out", want[0], be.download(out), dt);
                Compare.close(tag + " lse", want[1], be.download(lse), dt);
                // 16-bit: the forward only. The backward's D = rowsum(dO O) is formed from a rounded O and then
                // subtracted (dP - D): its error is a fraction of terms much larger than dQ and dK, so an elementwise bound
                // fits no real kernel; the BF16 backward is checked through the model's gradients against transformers
                // (HfParityTest: cosine >= 0.999 on every LoRA gradient, on every backend)
                if (dt.bits() < 32) continue; // the next backend
                be.kernels().attentionBackward(d, dOut.tensor(), q.tensor(), k.tensor(), v.tensor(), segments, scale, out, lse, dq, dk, dv);
                double[][] grads = Reference.attentionBackward(batch, seq, hq, hkv, hd, q.values(), k.values(), v.values(), seg, scale, dOut.values());
                Compare.close(tag + " dq", grads[0], be.download(dq), dt);
                Compare.close(tag + " dk", grads[1], be.download(dk), dt);
                Compare.close(tag + " dv", grads[2], be.download(dv), dt);
            }
        }
    }

    /** Decoding with a KV cache: the last {@code seq} queries over {@code kvSeq} keys equal the last rows of full attention. */
    @Property(tries = 40)
    void attentionWithKvCacheMatchesLastRows(@ForAll @IntRange(min = 1, max = 2) int batch, @ForAll @IntRange(min = 1, max = 15) int kvSeq,
                                             @ForAll @IntRange(min = 1, max = 15) int seqWanted, @ForAll("heads") int[] heads,
                                             @ForAll @IntRange(min = 1, max = 6) int halfDim, @ForAll("computeTypes") DType dt, @ForAll long seed) {
        checkKvCache(batch, kvSeq, Math.min(seqWanted, kvSeq), heads, halfDim, dt, seed);
    }

    /** The same over several query blocks: more than 32 queries, and keys beyond the first blocks. */
    @Property(tries = 10)
    void attentionWithKvCacheAcrossQueryBlocks(@ForAll @IntRange(min = 33, max = 75) int kvSeq, @ForAll @IntRange(min = 1, max = 75) int seqWanted,
                                               @ForAll("heads") int[] heads, @ForAll @IntRange(min = 1, max = 6) int halfDim,
                                               @ForAll("computeTypes") DType dt, @ForAll long seed) {
        checkKvCache(1, kvSeq, Math.min(seqWanted, kvSeq), heads, halfDim, dt, seed);
    }

    private static void checkKvCache(int batch, int kvSeq, int seq, int[] heads, int halfDim, DType dt, long seed) {
        int hq = heads[0], hkv = heads[1], hd = 2 * halfDim;
        double scale = 1 / Math.sqrt(hd);
        for (Backend be : BackendsUnderTest.all()) {
            SplittableRandom r = new SplittableRandom(seed);
            try (var qFull = TestData.random(be, dt, r, -2, 2, batch, kvSeq, hq, hd);
                 var k = TestData.random(be, dt, r, -2, 2, batch, kvSeq, hkv, hd);
                 var v = TestData.random(be, dt, r, -1, 1, batch, kvSeq, hkv, hd)) {
                double[][] full = Reference.attention(batch, kvSeq, hq, hkv, hd, qFull.values(), k.values(), v.values(), null, scale);
                int rowLen = hq * hd;
                double[] qLast = new double[batch * seq * rowLen], want = new double[batch * seq * rowLen];
                for (int b = 0; b < batch; b++) {
                    int from = (b * kvSeq + kvSeq - seq) * rowLen;
                    System.arraycopy(qFull.values(), from, qLast, b * seq * rowLen, seq * rowLen);
                    System.arraycopy(full[0], from, want, b * seq * rowLen, seq * rowLen);
                }
                try (Tensor q = be.upload(dt, Shape.of(batch, seq, hq, hd), qLast); Tensor out = be.allocate(dt, batch, seq, hq, hd);
                     Tensor lse = be.allocate(TestData.statsType(dt), batch, hq, seq)) {
                    be.kernels().attentionForward(new AttentionDims(batch, seq, hq, hkv, hd, kvSeq), q, k.tensor(), v.tensor(), null, scale, out, lse);
                    Compare.close(be.name() + " attention with KV cache kvSeq=" + kvSeq + " seq=" + seq, want, be.download(out), dt);
                }
            }
        }
    }
}
