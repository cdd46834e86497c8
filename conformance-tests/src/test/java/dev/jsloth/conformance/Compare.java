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

    /**
     * As {@link #close(String, double[], double[], DType)}, with the bound scaled by the terms' sizes rather than the
     * result's: {@code magnitude} is the same formula evaluated on absolute values (|X| |W|^T for X W^T), so that a sum
     * of large terms that cancels is held to the rounding its terms carry (a product rounded to BF16 on the way errs
     * by a fraction of |terms|, not of |result|). Never smaller than the plain bound: |result| <= its magnitude.
     */
    static void closeToTerms(String what, double[] expected, double[] magnitude, double[] actual, DType computeType) {
        if (magnitude.length != expected.length)
            throw new IllegalArgumentException(what + ": " + magnitude.length + " magnitudes for " + expected.length + " values");
        double maxMagnitude = 0;
        for (double m : magnitude) maxMagnitude = Math.max(maxMagnitude, Math.abs(m));
        check(what, expected, actual, Tolerances.of(computeType), maxMagnitude, "max|terms|");
    }

    static void close(String what, double[] expected, double[] actual, double tol) {
        double maxRef = 0;
        for (double e : expected) maxRef = Math.max(maxRef, Math.abs(e));
        check(what, expected, actual, tol, maxRef, "");
    }

    private static void check(String what, double[] expected, double[] actual, double tol, double scale, String scaleName) {
        if (expected.length != actual.length)
            throw new AssertionError(what + ": length " + actual.length + ", expected " + expected.length);
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
        double bound = tol * Math.max(1.0, scale);
        if (worst > bound)
            throw new AssertionError(String.format(Locale.ROOT, "%s: element %d is %.12g, expected %.12g (|err| %.3e > %.3e = %.1e x max(1, %s%.3e))",
                    what, worstAt, actual[worstAt], expected[worstAt], worst, bound, tol, scaleName.isEmpty() ? "" : scaleName + " ", scale));
    }
}
