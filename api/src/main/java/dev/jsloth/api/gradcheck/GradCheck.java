package dev.jsloth.api.gradcheck;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Tensor;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Checks a hand-written backward pass against central finite differences.
 *
 * <p>For a function {@code y = f(x_1..x_m)} it draws a fixed random cotangent R (same shape as y) and compares,
 * element by element, the analytic {@code dL/dx} returned by the backward for {@code L = sum(R * y)} with
 * {@code (L(x + h e) - L(x - h e)) / 2h}. Inputs must be F64 (refused otherwise: a step of 1e-6 is below F32's
 * resolution, so even a right backward would fail). An element passes when
 * {@code |analytic - numeric| <= absTol + relTol * max(|analytic|, |numeric|)}; the report names the worst
 * element of every input. An input whose backward returns null is checked against a zero gradient (so a backward that
 * forgets a gradient fails, and one for an input that does not change y passes). The inputs hold their own values
 * again when the check returns or throws.
 *
 * <pre>{@code
 * GradCheck.Report r = GradCheck.check(myOp, GradCheck.Options.defaults());
 * assertTrue(r.passed(), r.toString());
 * }</pre>
 */
public final class GradCheck {

    /** A named input of the function under test. Its values are perturbed in place during the check. */
    public record Input(String name, Tensor tensor) {
    }

    /** The function under test and its backward. */
    public interface Function {
        /** The inputs whose gradients are checked (F64 tensors). */
        List<Input> inputs();

        /** Computes y from the inputs' current values; returns a new tensor the checker closes. */
        Tensor forward();

        /**
         * Returns the gradients of {@code sum(dy * y)} with respect to each input, in {@link #inputs()} order, as new
         * tensors (the checker closes them); an entry may be null for an input that does not change y (checked as zeros).
         */
        List<Tensor> backward(Tensor dy);
    }

    /**
     * @param step                finite-difference step h
     * @param absTol              absolute tolerance
     * @param relTol              relative tolerance
     * @param maxElementsPerInput elements checked per input (chosen at random when the input is larger)
     * @param seed                seed for R and the element choice
     */
    public record Options(double step, double absTol, double relTol, int maxElementsPerInput, long seed) {
        public Options {
            if (!(step > 0) || Double.isInfinite(step)) throw new IllegalArgumentException("step must be a positive finite number, got " + step);
            if (!(absTol >= 0) || !(relTol >= 0)) throw new IllegalArgumentException("absTol and relTol must be >= 0, got " + absTol + " and " + relTol);
            if (!(absTol > 0 || relTol > 0)) throw new IllegalArgumentException("absTol and relTol cannot both be 0");
            if (maxElementsPerInput < 1) throw new IllegalArgumentException("maxElementsPerInput must be at least 1, got " + maxElementsPerInput);
        }

        public static Options defaults() {
            return new Options(1e-6, 1e-7, 1e-5, 64, 1234);
        }

        public Options withSeed(long s) {
            return new Options(step, absTol, relTol, maxElementsPerInput, s);
        }

        public Options withMaxElements(int n) {
            return new Options(step, absTol, relTol, n, seed);
        }
    }

    /** The outcome for one input: its worst element by tolerance-normalised error. */
    public record InputReport(String name, int checked, long worstIndex, double analytic, double numeric,
                              double maxAbsError, double maxRelError, boolean passed) {
        @Override
        public String toString() {
            return String.format(Locale.ROOT, "%-28s %s checked=%d worst[%d] analytic=% .10e numeric=% .10e abs=%.3e rel=%.3e",
                    name, passed ? "ok  " : "FAIL", checked, worstIndex, analytic, numeric, maxAbsError, maxRelError);
        }
    }

    /** Every input's outcome. */
    public record Report(List<InputReport> inputs) {
        public boolean passed() {
            return inputs.stream().allMatch(InputReport::passed);
        }

        public double maxAbsError() {
            return inputs.stream().mapToDouble(InputReport::maxAbsError).max().orElse(0);
        }

        public double maxRelError() {
            return inputs.stream().mapToDouble(InputReport::maxRelError).max().orElse(0);
        }

        @Override
        public String toString() {
            StringBuilder sb = new StringBuilder("GradCheck ").append(passed() ? "passed" : "FAILED").append('\n');
            for (InputReport r : inputs) sb.append("  ").append(r).append('\n');
            return sb.toString();
        }
    }

    private GradCheck() {
    }

    public static Report check(Function f, Options o) {
        List<Input> inputs = f.inputs();
        if (inputs.isEmpty()) throw new IllegalArgumentException("no inputs to check");
        for (Input in : inputs)
            if (in.tensor().dtype() != DType.F64)
                throw new IllegalArgumentException("GradCheck needs F64 inputs; " + in.name() + " is " + in.tensor().dtype()
                        + " (central differences with a step of " + o.step() + " are below its resolution)");
        Backend be = inputs.getFirst().tensor().backend();
        SplittableRandom rnd = new SplittableRandom(o.seed());

        double[] cot;
        Tensor cotangent;
        try (Tensor y = f.forward()) {
            cot = new double[Math.toIntExact(y.numel())];
            for (int i = 0; i < cot.length; i++) cot[i] = rnd.nextDouble(-1, 1);
            cotangent = be.upload(y.dtype(), y.shape(), cot);
        }
        List<double[]> analytic = new ArrayList<>();
        try (cotangent) {
            List<Tensor> grads = f.backward(cotangent);
            if (grads.size() != inputs.size())
                throw new IllegalStateException("backward returned " + grads.size() + " gradients for " + inputs.size() + " inputs");
            for (Tensor g : grads) {
                analytic.add(g == null ? null : be.download(g));
                if (g != null) g.close();
            }
        }

        List<InputReport> reports = new ArrayList<>();
        for (int in = 0; in < inputs.size(); in++) {
            Input input = inputs.get(in);
            double[] values = be.download(input.tensor());
            double[] a = analytic.get(in);
            String name = input.name();
            if (a == null) { // "no gradient": checked as zeros
                a = new double[values.length];
                name += " (no gradient returned)";
            }
            if (a.length != values.length)
                throw new IllegalStateException("gradient of " + input.name() + " has " + a.length + " elements, input has " + values.length);
            int[] idx = chooseElements(values.length, o.maxElementsPerInput(), rnd);
            long worst = -1;
            double worstScore = -1, worstA = 0, worstN = 0, maxAbs = 0, maxRel = 0;
            double[] original = values.clone();
            try {
                for (int e : idx) {
                    double orig = values[e];
                    double h = o.step() * Math.max(1.0, Math.abs(orig));
                    values[e] = orig + h;
                    double plus = objective(f, input.tensor(), values, cot);
                    values[e] = orig - h;
                    double minus = objective(f, input.tensor(), values, cot);
                    values[e] = orig;
                    double num = (plus - minus) / (2 * h);
                    double abs = Math.abs(a[e] - num);
                    double mag = Math.max(Math.abs(a[e]), Math.abs(num));
                    double rel = mag == 0 ? 0 : abs / mag;
                    double score = abs / (o.absTol() + o.relTol() * mag);
                    if (Double.isNaN(score)) score = Double.POSITIVE_INFINITY;
                    maxAbs = Math.max(maxAbs, abs);
                    if (mag > 1e-6) maxRel = Math.max(maxRel, rel);
                    if (score > worstScore) {
                        worstScore = score;
                        worst = e;
                        worstA = a[e];
                        worstN = num;
                    }
                }
            } finally {
                restore(input.tensor(), original); // also when forward throws midway
            }
            reports.add(new InputReport(name, idx.length, worst, worstA, worstN, maxAbs, maxRel, worstScore <= 1.0));
        }
        return new Report(reports);
    }

    private static double objective(Function f, Tensor input, double[] values, double[] cot) {
        restore(input, values);
        try (Tensor y = f.forward()) {
            double[] out = y.backend().download(y);
            double s = 0;
            for (int i = 0; i < out.length; i++) s += out[i] * cot[i];
            return s;
        }
    }

    private static void restore(Tensor input, double[] values) {
        Backend be = input.backend();
        try (Tensor tmp = be.upload(input.dtype(), input.shape(), values)) {
            be.kernels().copy(tmp, input);
        }
    }

    private static int[] chooseElements(int n, int max, SplittableRandom rnd) {
        if (n <= max) {
            int[] all = new int[n];
            for (int i = 0; i < n; i++) all[i] = i;
            return all;
        }
        int[] perm = new int[n];
        for (int i = 0; i < n; i++) perm[i] = i;
        for (int i = 0; i < max; i++) {
            int j = i + rnd.nextInt(n - i);
            int t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        return java.util.Arrays.copyOf(perm, max);
    }
}
