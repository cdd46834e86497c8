package dev.jsloth.conformance;

import dev.jsloth.api.DType;

/**
 * Every tolerance the conformance suite uses, in one place. A backend result passes when
 * {@code max|actual - expected| <= tol * max(1, max|expected|)} (inf-norm relative), with tol chosen by the
 * compute type of the kernel's output.
 *
 * <ul>
 * <li>F64: 1e-10 — only summation order may differ from the scalar reference.</li>
 * <li>F32: 5e-5 — float accumulation over up to ~4k terms (GEMM's k), well above the ~1e-6 seen.</li>
 * <li>BF16: 2e-2 and F16: 2e-3 — one rounding of the output to 8 / 11 significant bits, plus F32 compute.</li>
 * </ul>
 * Gradient checks (finite differences in F64) use {@link dev.jsloth.api.gradcheck.GradCheck.Options#defaults()}
 * with the tolerances stated there, tightened per test where noted.
 */
final class Tolerances {
    private Tolerances() {
    }

    static double of(DType t) {
        return switch (t) {
            case F64 -> 1e-10;
            case F32 -> 5e-5;
            case BF16 -> 2e-2;
            case F16 -> 2e-3;
            default -> throw new IllegalArgumentException("no tolerance for " + t);
        };
    }
}
