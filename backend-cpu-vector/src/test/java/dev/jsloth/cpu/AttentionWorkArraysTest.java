package dev.jsloth.cpu;

import dev.jsloth.api.AttentionDims;
import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.spi.Backends;
import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

/**
 * The single-precision attention ({@link AttentionKernel}) keeps its work arrays from call to call. A call after one
 * that left NaN in them (longer sequences, NaN inputs) must give the same bits as on fresh arrays: the padding its
 * products read past the keys (rows of V and K, key columns of K^T and V^T) is written each time, not assumed zero.
 */
class AttentionWorkArraysTest {

    /** out, lse, dq, dk and dv of one forward and backward pass, end to end. */
    private static double[][] pass(Backend be, int seq, int qHeads, int kvHeads, int hd, double fill, long seed) {
        AttentionDims d = new AttentionDims(1, seq, qHeads, kvHeads, hd);
        SplittableRandom r = new SplittableRandom(seed);
        java.util.function.IntFunction<double[]> values = n -> {
            double[] v = new double[n];
            for (int i = 0; i < n; i++) v[i] = Double.isNaN(fill) ? fill : r.nextDouble(-1.5, 1.5);
            return v;
        };
        int nq = seq * qHeads * hd, nk = seq * kvHeads * hd;
        try (Tensor q = be.upload(DType.F32, Shape.of(1, seq, qHeads, hd), values.apply(nq));
             Tensor k = be.upload(DType.F32, Shape.of(1, seq, kvHeads, hd), values.apply(nk));
             Tensor v = be.upload(DType.F32, Shape.of(1, seq, kvHeads, hd), values.apply(nk));
             Tensor dOut = be.upload(DType.F32, Shape.of(1, seq, qHeads, hd), values.apply(nq));
             Tensor out = be.allocate(DType.F32, Shape.of(1, seq, qHeads, hd)); Tensor lse = be.allocate(DType.F32, Shape.of(1, qHeads, seq));
             Tensor dq = be.allocate(DType.F32, Shape.of(1, seq, qHeads, hd)); Tensor dk = be.allocate(DType.F32, Shape.of(1, seq, kvHeads, hd));
             Tensor dv = be.allocate(DType.F32, Shape.of(1, seq, kvHeads, hd))) {
            double scale = 1 / Math.sqrt(hd);
            be.kernels().attentionForward(d, q, k, v, null, scale, out, lse);
            be.kernels().attentionBackward(d, dOut, q, k, v, null, scale, out, lse, dq, dk, dv);
            return new double[][]{be.download(out), be.download(lse), be.download(dq), be.download(dk), be.download(dv)};
        }
    }

    @Test
    void aCallAfterNaNLeftInTheWorkArraysGivesTheSameBits() {
        try (Backend be = Backends.create("cpu")) {
            // key counts off the kernel's column width (40, 13 keys: padded panels), head dims off it (24)
            int[][] shapes = {{40, 4, 2, 64}, {13, 2, 1, 24}, {70, 2, 2, 32}};
            for (int[] s : shapes) {
                double[][] fresh = pass(be, s[0], s[1], s[2], s[3], 0, 7);
                for (int i = 0; i < 4; i++) pass(be, 150, 8, 4, 64, Double.NaN, 0); // every thread's arrays full of NaN
                double[][] again = pass(be, s[0], s[1], s[2], s[3], 0, 7);
                for (int t = 0; t < fresh.length; t++) assertArrayEquals(fresh[t], again[t], 0.0, "shape " + java.util.Arrays.toString(s) + ", output " + t);
            }
        }
    }
}
