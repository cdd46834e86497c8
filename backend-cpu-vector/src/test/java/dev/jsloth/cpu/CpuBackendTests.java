package dev.jsloth.cpu;

import dev.jsloth.api.Backend;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

import java.util.SplittableRandom;

/** A CPU backend for a test class's lifetime, and random operands. */
abstract class CpuBackendTests {
    static Backend be;

    @BeforeAll
    static void start() {
        be = new CpuBackendProvider().create();
    }

    @AfterAll
    static void stop() {
        be.close();
    }

    /** n values uniform in [-1, 1). */
    static double[] random(SplittableRandom r, int n) {
        double[] v = new double[n];
        for (int i = 0; i < n; i++) v[i] = r.nextDouble(-1, 1);
        return v;
    }
}
