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
        // probabilities 0.4 / 0.3 / 0.2 / 0.1 at temperature 1; top_k 3 renormalises to 4/9, 3/9, 2/9; top_p 0.7 then
        // keeps 4/9 + 3/9 = 0.78 >= 0.7 (without top_k it would keep 0.4 + 0.3 = 0.7 as well, but with other weights)
        double[] logits = {Math.log(0.4), Math.log(0.3), Math.log(0.2), Math.log(0.1)};
        int n = 40_000;
        int[] c = counts(logits, new GenerationOptions(1, 1.0, 0.7, 3, 0, null), n);
        assertEquals(0, c[2] + c[3]);
        assertEquals(4 / 7.0, c[0] / (double) n, 4 * Math.sqrt(0.25 / n));
        // a temperature of 0.5 squares the odds before top_k: 16 : 9 : 4 : 1, top_k 1 keeps the first only
        int[] t = counts(logits, new GenerationOptions(1, 0.5, 1.0, 1, 0, null), 1000);
        assertEquals(1000, t[0]);
    }

    @Test
    void greedyIgnoresTopK() {
        assertEquals(1, Sampling.choose(new double[]{0, 5, 1}, new GenerationOptions(1, 0, 1.0, 1, 0, null), new SplittableRandom(1)));
        var e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> new GenerationOptions(1, 1, 1, -1, 0, null));
        assertTrue(e.getMessage().contains("top_k"), e.getMessage());
    }
}
