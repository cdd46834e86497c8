package dev.jsloth.api.gradcheck;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** GradCheck's options are checked where they are made (the backend-dependent behaviour is tested in conformance-tests). */
class GradCheckTest {
    @Test
    void optionsThatCannotCheckAnythingAreRefused() {
        GradCheck.Options d = GradCheck.Options.defaults();
        assertTrue(assertThrows(IllegalArgumentException.class, () -> d.withMaxElements(0)).getMessage().contains("maxElementsPerInput"));
        assertThrows(IllegalArgumentException.class, () -> d.withMaxElements(-1));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> new GradCheck.Options(0, 1e-7, 1e-5, 8, 1)).getMessage().contains("step"));
        assertThrows(IllegalArgumentException.class, () -> new GradCheck.Options(Double.NaN, 1e-7, 1e-5, 8, 1));
        assertThrows(IllegalArgumentException.class, () -> new GradCheck.Options(1e-6, -1, 1e-5, 8, 1));
        assertThrows(IllegalArgumentException.class, () -> new GradCheck.Options(1e-6, 0, 0, 8, 1));
    }
}
