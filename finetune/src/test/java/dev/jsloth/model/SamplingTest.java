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
}
