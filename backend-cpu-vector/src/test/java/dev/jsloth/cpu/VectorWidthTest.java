package dev.jsloth.cpu;

import jdk.incubator.vector.FloatVector;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The backend's tests also run with vectors of at most 256 bits (the pom's {@code vectors-256} execution, which sets
 * {@code jsloth.test.maxVectorBits}): this checks that such a run did get the narrower vectors, and so the GEMM's
 * 5-row packed kernel and its 6-row kernels on every other path, rather than silently repeating the default run.
 */
class VectorWidthTest {
    @Test
    void theRunHasTheVectorWidthItWasStartedFor() {
        Integer max = Integer.getInteger("jsloth.test.maxVectorBits");
        assumeTrue(max != null, "the default run (no jsloth.test.maxVectorBits): any width");
        assumeTrue("amd64".equals(System.getProperty("os.arch")) || "x86_64".equals(System.getProperty("os.arch")),
                "-XX:UseAVX only narrows vectors on x86");
        int bits = FloatVector.SPECIES_PREFERRED.vectorBitSize();
        assertTrue(bits <= max, "preferred float vectors of " + bits + " bits in a run limited to " + max);
        assertEquals(bits >= 512 ? 2 * GemmMicrokernels.HALF : GemmMicrokernels.FIVE_ROWS, GemmMicrokernels.MR, "the GEMM's panel height for " + bits + "-bit vectors");
    }
}
