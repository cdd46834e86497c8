package dev.jsloth.cpu;

import dev.jsloth.api.AttentionDims;
import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.spi.Backends;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

/**
 * The single-precision attention ({@link AttentionKernel}) keeps its work arrays from call to call. A call after one
 * that left NaN in them (longer sequences, NaN inputs) must give the same bits as on fresh arrays: the padding its
 * products read past the keys (rows of V and K, key columns of K^T and V^T) is written each time, not assumed zero.
 * Training shapes (forward and backward, with and without packed-sequence segments) and decoding's (queries at the end
 * of a longer key sequence, forward only).
 */
class AttentionWorkArraysTest {

    /** out and lse of the forward pass, then (where kvSeq == seq) dq, dk and dv of the backward, end to end. */
    private static double[][] pass(Backend be, int seq, int kvSeq, int qHeads, int kvHeads, int hd, boolean nan, boolean segmented,
                                   long seed) {
        AttentionDims d = new AttentionDims(1, seq, qHeads, kvHeads, hd, kvSeq);
        SplittableRandom r = new SplittableRandom(seed);
        java.util.function.IntFunction<double[]> values = n -> {
            double[] v = new double[n];
            for (int i = 0; i < n; i++) v[i] = nan ? Double.NaN : r.nextDouble(-1.5, 1.5);
            return v;
        };
        int[] segIds = new int[seq];
        for (int t = 0; t < seq; t++) segIds[t] = t * 3 / seq; // three packed sequences
        List<Tensor> held = new ArrayList<>();
        try {
            Tensor q = keep(held, be.upload(DType.F32, Shape.of(1, seq, qHeads, hd), values.apply(seq * qHeads * hd)));
            Tensor k = keep(held, be.upload(DType.F32, Shape.of(1, kvSeq, kvHeads, hd), values.apply(kvSeq * kvHeads * hd)));
            Tensor v = keep(held, be.upload(DType.F32, Shape.of(1, kvSeq, kvHeads, hd), values.apply(kvSeq * kvHeads * hd)));
            Tensor segments = segmented ? keep(held, be.uploadInts(Shape.of(1, seq), segIds)) : null;
            Tensor out = keep(held, be.allocate(DType.F32, Shape.of(1, seq, qHeads, hd)));
            Tensor lse = keep(held, be.allocate(DType.F32, Shape.of(1, qHeads, seq)));
            double scale = 1 / Math.sqrt(hd);
            be.kernels().attentionForward(d, q, k, v, segments, scale, out, lse);
            if (kvSeq != seq) return new double[][]{be.download(out), be.download(lse)};
            Tensor dOut = keep(held, be.upload(DType.F32, Shape.of(1, seq, qHeads, hd), values.apply(seq * qHeads * hd)));
            Tensor dq = keep(held, be.allocate(DType.F32, Shape.of(1, seq, qHeads, hd)));
            Tensor dk = keep(held, be.allocate(DType.F32, Shape.of(1, seq, kvHeads, hd)));
            Tensor dv = keep(held, be.allocate(DType.F32, Shape.of(1, seq, kvHeads, hd)));
            be.kernels().attentionBackward(d, dOut, q, k, v, segments, scale, out, lse, dq, dk, dv);
            return new double[][]{be.download(out), be.download(lse), be.download(dq), be.download(dk), be.download(dv)};
        } finally {
            for (Tensor t : held) t.close();
        }
    }

    private static Tensor keep(List<Tensor> held, Tensor t) {
        held.add(t);
        return t;
    }

    @Test
    void aCallAfterNaNLeftInTheWorkArraysGivesTheSameBits() {
        try (Backend be = Backends.create("cpu")) {
            // {seq, kvSeq, qHeads, kvHeads, headDim, segmented}: key counts off the kernel's column width (40, 13, 70:
            // padded panels), head dims off it (24), packed sequences, and decoding (4 queries after 37 keys)
            int[][] shapes = {{40, 40, 4, 2, 64, 0}, {13, 13, 2, 1, 24, 0}, {70, 70, 2, 2, 32, 0}, {45, 45, 2, 1, 64, 1},
                    {4, 37, 4, 2, 64, 0}, {1, 70, 2, 2, 24, 0}};
            for (int[] s : shapes) {
                double[][] fresh = pass(be, s[0], s[1], s[2], s[3], s[4], false, s[5] == 1, 7);
                for (int i = 0; i < 4; i++) { // every thread's arrays full of NaN, training's and decoding's
                    pass(be, 150, 150, 8, 4, 64, true, false, 0);
                    pass(be, 8, 150, 8, 4, 64, true, false, 0);
                }
                double[][] again = pass(be, s[0], s[1], s[2], s[3], s[4], false, s[5] == 1, 7);
                for (int t = 0; t < fresh.length; t++)
                    assertArrayEquals(fresh[t], again[t], 0.0, "shape " + Arrays.toString(s) + ", output " + t);
            }
        }
    }
}
