package dev.jsloth.conformance;

import dev.jsloth.api.Backend;
import dev.jsloth.api.spi.BackendProvider;
import dev.jsloth.api.spi.Backends;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Every backend on the class path that is available here, created once per test JVM. The conformance
 * properties run each op on all of them; {@link BackendAvailabilityTest} reports the unavailable ones as
 * skipped, with their reason.
 */
final class BackendsUnderTest {
    private static final Map<String, Backend> BACKENDS = new LinkedHashMap<>();

    private BackendsUnderTest() {
    }

    static synchronized List<Backend> all() {
        if (BACKENDS.isEmpty()) {
            for (BackendProvider p : Backends.providers()) {
                if (p.availability().available()) BACKENDS.put(p.name(), p.create());
            }
            if (BACKENDS.isEmpty()) throw new IllegalStateException("no backend is available: " + Backends.statuses());
        }
        return new ArrayList<>(BACKENDS.values());
    }

    /** The CPU reference backend (gradient checks run there, in F64). */
    static synchronized Backend cpu() {
        for (Backend b : all()) if (b.name().equals("cpu")) return b;
        throw new IllegalStateException("the cpu backend is not on the class path");
    }
}
