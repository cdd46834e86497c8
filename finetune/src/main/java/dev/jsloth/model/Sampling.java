package dev.jsloth.model;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Greedy, or temperature, top-k and nucleus (top-p) choice of the next token, in transformers' order of operations:
 * the logits divided by the temperature, those below the k-th largest dropped (ties kept, as TopKLogitsWarper), then
 * the smallest set of the most likely tokens whose probability reaches top_p.
 */
final class Sampling {
    private Sampling() {
    }

    static int choose(double[] logits, GenerationOptions o, SplittableRandom rnd) {
        if (o.temperature() == 0) return argmax(logits);
        int v = logits.length;
        double[] z = new double[v];
        double max = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < v; i++) {
            z[i] = logits[i] / o.temperature();
            max = Math.max(max, z[i]);
        }
        double sum = 0;
        if (o.topK() > 0 && o.topK() < v) {
            double[] sorted = z.clone();
            Arrays.sort(sorted);
            double kth = sorted[v - o.topK()];
            for (int i = 0; i < v; i++) if (z[i] < kth) z[i] = Double.NEGATIVE_INFINITY;
        }
        for (int i = 0; i < v; i++) {
            z[i] = Math.exp(z[i] - max);
            sum += z[i];
        }
        for (int i = 0; i < v; i++) z[i] /= sum;
        if (o.topP() < 1) {
            Integer[] order = new Integer[v];
            for (int i = 0; i < v; i++) order[i] = i;
            Arrays.sort(order, (a, b) -> Double.compare(z[b], z[a]));
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
        double u = rnd.nextDouble();
        double acc = 0;
        int last = 0;
        for (int i = 0; i < v; i++) {
            if (z[i] == 0) continue;
            acc += z[i];
            last = i;
            if (u < acc) return i;
        }
        return last;
    }

    /** The first index of the largest value (torch.argmax's tie rule). */
    static int argmax(double[] x) {
        int best = 0;
        for (int i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
        return best;
    }
}
