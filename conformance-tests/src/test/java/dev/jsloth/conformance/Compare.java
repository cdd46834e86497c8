package dev.jsloth.conformance;

import dev.jsloth.api.DType;

import java.util.Locale;

/** Assertions on arrays with an error message that names the worst element. */
final class Compare {
    private Compare() {
    }

    static void close(String what, double[] expected, double[] actual, DType computeType) {
        close(what, expected, actual, Tolerances.of(computeType));
    }

    static void close(String what, double[] expected, double[] actual, double tol) {
        if (expected.length != actual.length)
            throw new AssertionError(what + ": length " + actual.length + ", expected " + expected.length);
        double maxRef = 0;
        for (double e : expected) maxRef = Math.max(maxRef, Math.abs(e));
        double worst = -1;
        int worstAt = -1;
        for (int i = 0; i < expected.length; i++) {
            double err = Math.abs(actual[i] - expected[i]);
            if (Double.isNaN(err) && !(Double.isNaN(expected[i]) && Double.isNaN(actual[i]))) err = Double.POSITIVE_INFINITY;
            if (err > worst) {
                worst = err;
                worstAt = i;
            }
        }
        double bound = tol * Math.max(1.0, maxRef);
        if (worst > bound)
            throw new AssertionError(String.format(Locale.ROOT, "%s: element %d is %.12g, expected %.12g (|err| %.3e > %.3e = %.1e x max(1, %.3e))",
                    what, worstAt, actual[worstAt], expected[worstAt], worst, bound, tol, maxRef));
    }
}
