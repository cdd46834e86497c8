package dev.jsloth.model;

import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Temperature, top-k (ties kept) and top-p, in transformers' order, by the frequencies they give. */
class SamplingTest {
    private static int[] counts(double[] logits, GenerationOptions o, int draws) {
        SplittableRandom r = new SplittableRandom(11);
        int[] c = new int[logits.length];
        for (int i = 0; i < draws; i++) c[Sampling.choose(logits, o, r)]++;
        return c;
    }

    @Test
    void topKKeepsTheKMostLikelyAndTheirTies() {
        double[] logits = {1, 3, 2, 0, 2};
        int n = 40_000;
        int[] c = counts(logits, new GenerationOptions(1, 1.0, 1.0, 2, 0, null), n);
        // the two largest are 3 and 2, and the second 2 ties with the first: 3 kept
        assertEquals(0, c[0] + c[3]);
        double z = Math.exp(3) + 2 * Math.exp(2);
        assertEquals(Math.exp(3) / z, c[1] / (double) n, 4 * Math.sqrt(0.25 / n));
        assertEquals(Math.exp(2) / z, c[2] / (double) n, 4 * Math.sqrt(0.25 / n));
        int[] all = counts(logits, new GenerationOptions(1, 1.0, 1.0, 0, 0, null), n);
        assertTrue(all[0] > 0 && all[3] > 0, "top_k 0 is off");
        int[] many = counts(logits, new GenerationOptions(1, 1.0, 1.0, 50, 0, null), n);
        assertTrue(many[0] > 0 && many[3] > 0, "k past the vocabulary keeps everything");
    }

    @Test
    void topKComesBeforeTopPAndAfterTheTemperature() {
        // probabilities 0.5 / 0.25 / 0.15 / 0.1, top_k 2, top_p 0.6. top_k first (transformers' order) keeps 0.5 and 0.25,
        // renormalised 2/3 and 1/3, and top_p then keeps token 0 alone (2/3 >= 0.6). top_p first would keep tokens 0
        // and 1 (0.5 + 0.25 = 0.75), and top_k 2 would leave both.
        double[] logits = {Math.log(0.5), Math.log(0.25), Math.log(0.15), Math.log(0.1)};
        int[] c = counts(logits, new GenerationOptions(1, 1.0, 0.6, 2, 0, null), 5000);
        assertEquals(5000, c[0]);
        // without top_k, top_p 0.6 keeps tokens 0 and 1 in the ratio 2 : 1
        int n = 40_000;
        int[] p = counts(logits, new GenerationOptions(1, 1.0, 0.6, 0, 0, null), n);
        assertEquals(0, p[2] + p[3]);
        assertEquals(2 / 3.0, p[0] / (double) n, 4 * Math.sqrt(0.25 / n));
        // a temperature of 2 flattens the odds before top_k: sqrt(0.5) : sqrt(0.25) : ... , so top_k 2 then top_p 0.6
        // keeps both of the first two (sqrt(2) / (sqrt(2) + 1) = 0.586 < 0.6)
        int[] t = counts(logits, new GenerationOptions(1, 2.0, 0.6, 2, 0, null), n);
        assertEquals(0, t[2] + t[3]);
        assertEquals(Math.sqrt(2) / (Math.sqrt(2) + 1), t[0] / (double) n, 4 * Math.sqrt(0.25 / n));
    }

    @Test
    void greedyIgnoresTopK() {
        assertEquals(1, Sampling.choose(new double[]{0, 5, 1}, new GenerationOptions(1, 0, 1.0, 1, 0, null), new SplittableRandom(1)));
        var e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> new GenerationOptions(1, 1, 1, -1, 0, null));
        assertTrue(e.getMessage().contains("top_k"), e.getMessage());
    }

    /**
     * The selection (top-k) and the partial sort (top-p) choose what sorting the whole vocabulary chose: the same tokens
     * for the same draws, over logits with ties, -inf and flat and peaked shapes, vocabularies of 1 to 4098 tokens.
     */
    @Test
    void filtersMatchFullSorting() {
        SplittableRandom gen = new SplittableRandom(5);
        int[] sizes = {1, 2, 13, 207, 1000, 4098};
        for (int round = 0; round < 300; round++) {
            int v = sizes[round % sizes.length];
            double[] logits = new double[v];
            int shape = gen.nextInt(4);
            for (int i = 0; i < v; i++) {
                logits[i] = switch (shape) {
                    case 0 -> gen.nextGaussian() * 3;                     // peaked
                    case 1 -> gen.nextGaussian() * 0.05;                  // flat
                    case 2 -> gen.nextInt(5);                             // many ties
                    default -> gen.nextInt(10) == 0 ? Double.NEGATIVE_INFINITY : gen.nextGaussian() * 8;
                };
            }
            if (shape == 3) logits[gen.nextInt(v)] = 1; // at least one finite
            int k = gen.nextInt(3) == 0 ? 0 : 1 + gen.nextInt(Math.max(1, v + 2));
            double p = gen.nextInt(3) == 0 ? 1.0 : gen.nextDouble();
            double t = 0.1 + 2 * gen.nextDouble();
            GenerationOptions o = new GenerationOptions(1, t, p, k, 0, null);
            SplittableRandom a = new SplittableRandom(round), b = new SplittableRandom(round);
            for (int d = 0; d < 20; d++)
                assertEquals(sortedReference(logits, o, b), Sampling.choose(logits, o, a), "v " + v + " k " + k + " p " + p + " t " + t);
        }
        double[] x = {3, 1, 2, 2, 5, -1};
        for (int kk = 1; kk <= x.length; kk++) {
            double[] s = x.clone();
            java.util.Arrays.sort(s);
            assertEquals(s[x.length - kk], Sampling.kthLargest(x, kk), "k " + kk);
        }
    }

    /** The filters by sorting everything: the k-th largest from a sorted copy, the top-p order from a stable sort of all ids. */
    private static int sortedReference(double[] logits, GenerationOptions o, SplittableRandom rnd) {
        int v = logits.length;
        double[] z = new double[v];
        double max = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < v; i++) {
            z[i] = logits[i] / o.temperature();
            max = Math.max(max, z[i]);
        }
        if (o.topK() > 0 && o.topK() < v) {
            double[] sorted = z.clone();
            java.util.Arrays.sort(sorted);
            double kth = sorted[v - o.topK()];
            for (int i = 0; i < v; i++) if (z[i] < kth) z[i] = Double.NEGATIVE_INFINITY;
        }
        double sum = 0;
        for (int i = 0; i < v; i++) {
            z[i] = Math.exp(z[i] - max);
            sum += z[i];
        }
        for (int i = 0; i < v; i++) z[i] /= sum;
        if (o.topP() < 1) {
            Integer[] order = new Integer[v];
            for (int i = 0; i < v; i++) order[i] = i;
            java.util.Arrays.sort(order, (a, b) -> Double.compare(z[b], z[a]));
            double cum = 0;
            boolean[] keep = new boolean[v];
            for (int r = 0; r < v; r++) {
                keep[order[r]] = true;
                cum += z[order[r]];
                if (cum >= o.topP()) break;
            }
            double kept = 0;
            for (int i = 0; i < v; i++) {
                if (!keep[i]) z[i] = 0;
                kept += z[i];
            }
            for (int i = 0; i < v; i++) z[i] /= kept;
        }
        double u = rnd.nextDouble(), acc = 0;
        int last = 0;
        for (int i = 0; i < v; i++) {
            if (z[i] == 0) continue;
            acc += z[i];
            last = i;
            if (u < acc) return i;
        }
        return last;
    }
}
