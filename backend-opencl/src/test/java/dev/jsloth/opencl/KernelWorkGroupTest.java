package dev.jsloth.opencl;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** A kernel whose reqd_work_group_size the device cannot run is refused by name when it is made (no device needed). */
class KernelWorkGroupTest {
    @Test
    void aRequiredGroupLargerThanTheKernelsLimitIsRefusedByName() {
        assertNull(KernelLibrary.refusedWorkGroup("main/FLOAT/add", new long[3], 256, "dev"), "no reqd_work_group_size");
        assertNull(KernelLibrary.refusedWorkGroup("gemm/k", new long[]{16, 16, 1}, 256, "dev"), "exactly the limit");
        String why = KernelLibrary.refusedWorkGroup("gemm/k", new long[]{16, 16, 2}, 256, "Some GPU");
        assertTrue(why != null && why.contains("gemm/k") && why.contains("16 x 16 x 2 = 512") && why.contains("Some GPU")
                && why.contains("at most 256"), why);
    }
}
