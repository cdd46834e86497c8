package dev.jsloth.model;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Greedy, or temperature, top-k and nucleus (top-p) choice of the next token, in transformers' order of operations:
 * the logits divided by the temperature, those below the k-th largest dropped (ties kept, as TopKLogitsWarper), then
 * the smallest set of the most likely tokens whose probability reaches top_p (most likely first, the lower id first
 * among equals).
 *
 * <p>Neither filter sorts the vocabulary: the k-th largest logit is found by selection ({@link #kthLargest}, linear on
 * average), and top-p sorts only the tokens of the few largest binary orders of magnitude of probability that hold
 * top_p of the mass ({@link #nucleus}), a prefix of the full descending order, so the kept set and its sums are those
 * a full sort gives.
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
            double kth = kthLargest(z, o.topK());
            for (int i = 0; i < v; i++) if (z[i] < kth) z[i] = Double.NEGATIVE_INFINITY;
        }
        for (int i = 0; i < v; i++) {
            z[i] = Math.exp(z[i] - max);
            sum += z[i];
        }
        for (int i = 0; i < v; i++) z[i] /= sum;
        if (o.topP() < 1) {
            boolean[] keep = nucleus(z, o.topP());
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

    /**
     * The tokens of the top-p set of probabilities {@code z}: the most likely first (the lower index first among equal
     * ones) until their sum reaches {@code topP}. The tokens are bucketed by binary exponent in one pass; the buckets from
     * the top down to the one where the buckets' mass reaches topP, and one more below for the rounding of that mass,
     * hold a prefix of the descending order, and only that prefix is sorted. Where its exact sum falls short (not
     * expected), all tokens are sorted.
     */
    static boolean[] nucleus(double[] z, double topP) {
        int v = z.length;
        // by -exponent: 2^0 (p = 1) down to 2^-1022, then all subnormals together (getExponent gives them -1023)
        double[] mass = new double[2 - Double.MIN_EXPONENT];
        int[] count = new int[mass.length];
        for (double p : z) {
            if (p > 0) {
                mass[-Math.getExponent(p)] += p;
                count[-Math.getExponent(p)]++;
            }
        }
        int cut = mass.length - 1, n = 0;
        double reached = 0;
        for (int b = 0; b < mass.length; b++) {
            reached += mass[b];
            if (reached >= topP) {
                cut = Math.min(mass.length - 1, b + 1);
                break;
            }
        }
        for (int b = 0; b <= cut; b++) n += count[b];
        double[] prefix = new double[n];
        for (int i = 0, j = 0; i < v; i++) if (z[i] > 0 && -Math.getExponent(z[i]) <= cut) prefix[j++] = z[i];
        boolean[] keep = new boolean[v];
        if (!keepPrefix(z, prefix, topP, keep) && !keepPrefix(z, z.clone(), topP, keep)) Arrays.fill(keep, true);
        return keep;
    }

    /**
     * Marks the top-p set given {@code values}, the probabilities of a prefix of the descending order (sorted here):
     * their sum from the largest down reaches topP at some value, and every token above it is kept, with as many of the
     * tokens at it as that prefix took, lowest ids first (a stable sort's order). The sums depend on the values only, so
     * they are those of sorting every id. False, marking nothing, if the sum never reaches topP.
     */
    private static boolean keepPrefix(double[] z, double[] values, double topP, boolean[] keep) {
        Arrays.sort(values);
        double cum = 0;
        int r = values.length - 1;
        for (; r >= 0; r--) {
            cum += values[r];
            if (cum >= topP) break;
        }
        if (r < 0) return false;
        double last = values[r];
        int atLast = 0; // how many of the tokens equal to the last value kept are in the prefix
        for (int i = r; i < values.length && values[i] == last; i++) atLast++;
        for (int i = 0; i < z.length; i++) {
            if (z[i] > last) keep[i] = true;
            else if (z[i] == last && atLast > 0) {
                keep[i] = true;
                atLast--;
            }
        }
        return true;
    }

    /**
     * The k-th largest of {@code x} (1 <= k <= length), counting repeats, in {@link Double#compare}'s order (that of
     * {@code Arrays.sort}): selection on a copy, linear on average.
     */
    static double kthLargest(double[] x, int k) {
        double[] a = x.clone();
        int target = a.length - k, lo = 0, hi = a.length - 1;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            // median of three as the pivot, then a three-way partition (ties with the pivot gather in the middle)
            double p = median(a[lo], a[mid], a[hi]);
            int lt = lo, i = lo, gt = hi;
            while (i <= gt) {
                int c = Double.compare(a[i], p);
                if (c < 0) swap(a, lt++, i++);
                else if (c > 0) swap(a, i, gt--);
                else i++;
            }
            if (target < lt) hi = lt - 1;
            else if (target > gt) lo = gt + 1;
            else return p;
        }
        return a[target];
    }

    private static double median(double a, double b, double c) {
        if (Double.compare(a, b) > 0) {
            double t = a;
            a = b;
            b = t;
        }
        if (Double.compare(b, c) > 0) b = Double.compare(a, c) > 0 ? a : c;
        return b;
    }

    private static void swap(double[] a, int i, int j) {
        double t = a[i];
        a[i] = a[j];
        a[j] = t;
    }

    /** The first index of the largest value (torch.argmax's tie rule). */
    static int argmax(double[] x) {
        int best = 0;
        for (int i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
        return best;
    }
}
