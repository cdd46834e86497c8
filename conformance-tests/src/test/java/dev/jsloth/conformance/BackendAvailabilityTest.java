package dev.jsloth.conformance;

import dev.jsloth.api.spi.Backends;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

import java.util.stream.Stream;

/**
 * One test per backend provider found by {@link java.util.ServiceLoader}: it passes when the backend is
 * available and runs in the conformance suite, and is reported as skipped, with the provider's reason, when it
 * is not (no GPU in CI, say). Nothing is faked.
 */
class BackendAvailabilityTest {
    @TestFactory
    Stream<DynamicTest> everyProviderIsRunOrVisiblySkipped() {
        return Backends.statuses().stream().map(s -> DynamicTest.dynamicTest("backend " + s.name(), () -> {
            System.out.println("[conformance] backend " + s.name() + ": "
                    + (s.availability().available() ? "available (" : "SKIPPED (") + s.availability().reason() + ")");
            Assumptions.assumeTrue(s.availability().available(), () -> "backend " + s.name() + " unavailable: " + s.availability().reason());
            org.junit.jupiter.api.Assertions.assertTrue(BackendsUnderTest.all().stream().anyMatch(b -> b.name().equals(s.name())));
        }));
    }
}
