package dev.jsloth.conformance;

import dev.jsloth.api.Backend;
import dev.jsloth.api.spi.Availability;
import dev.jsloth.api.spi.BackendProvider;
import dev.jsloth.api.spi.BackendUnavailableException;
import dev.jsloth.api.spi.Backends;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** ServiceLoader discovery and the selection rules of {@link Backends}. */
class BackendSelectionTest {

    private record Fake(String name, int priority, Availability availability) implements BackendProvider {
        @Override
        public Backend create() {
            throw new UnsupportedOperationException("fake");
        }
    }

    private static final List<BackendProvider> FAKES = List.of(
            new Fake("slow", 1, Availability.available("ok")),
            new Fake("fast", 50, Availability.unavailable("no GPU found")),
            new Fake("medium", 20, Availability.available("ok")));

    @Test
    void serviceLoaderFindsTheCpuBackend() {
        assertTrue(Backends.providers().stream().anyMatch(p -> p.name().equals("cpu")), "cpu provider on the class path");
        Backends.Status cpu = Backends.statuses().stream().filter(s -> s.name().equals("cpu")).findFirst().orElseThrow();
        assertTrue(cpu.availability().available(), cpu.availability().reason());
        try (Backend be = Backends.create("cpu")) {
            assertEquals("cpu", be.name());
        }
    }

    @Test
    void defaultIsTheHighestPriorityAvailableBackend() {
        assertEquals("medium", Backends.choose(null, FAKES).name());
    }

    @Test
    void namedBackendIsChosenCaseInsensitively() {
        assertEquals("slow", Backends.choose("SLOW", FAKES).name());
    }

    @Test
    void namedButUnavailableBackendSaysWhy() {
        var e = assertThrows(BackendUnavailableException.class, () -> Backends.choose("fast", FAKES));
        assertTrue(e.getMessage().contains("no GPU found"), e.getMessage());
    }

    @Test
    void unknownNameListsTheKnownBackends() {
        var e = assertThrows(BackendUnavailableException.class, () -> Backends.choose("tpu", FAKES));
        assertTrue(e.getMessage().contains("tpu") && e.getMessage().contains("medium (available)")
                && e.getMessage().contains("fast (unavailable: no GPU found)"), e.getMessage());
    }

    @Test
    void nothingAvailableIsAClearError() {
        var e = assertThrows(BackendUnavailableException.class,
                () -> Backends.choose(null, List.of(new Fake("x", 1, Availability.unavailable("nope")))));
        assertTrue(e.getMessage().contains("no backend is available") && e.getMessage().contains("nope"), e.getMessage());
    }

    @Test
    void systemPropertySelectsByName() {
        String old = System.getProperty(Backends.PROPERTY);
        try {
            System.setProperty(Backends.PROPERTY, "cpu");
            assertEquals("cpu", Backends.requestedName());
            try (Backend be = Backends.create()) {
                assertEquals("cpu", be.name());
            }
            System.setProperty(Backends.PROPERTY, "no-such-backend");
            assertThrows(BackendUnavailableException.class, Backends::create);
        } finally {
            if (old == null) System.clearProperty(Backends.PROPERTY);
            else System.setProperty(Backends.PROPERTY, old);
        }
    }

    @Test
    void aThrowingAvailabilityCheckIsReportedNotPropagated() {
        BackendProvider broken = new BackendProvider() {
            public String name() { return "broken"; }
            public int priority() { return 99; }
            public Availability availability() { throw new UnsatisfiedLinkError("libfoo.so not found"); }
            public Backend create() { throw new UnsupportedOperationException(); }
        };
        List<Backends.Status> s = Backends.statuses(List.of(broken));
        assertTrue(!s.getFirst().availability().available() && s.getFirst().availability().reason().contains("libfoo.so"));
    }
}
