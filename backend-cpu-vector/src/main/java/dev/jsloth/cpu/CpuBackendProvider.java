package dev.jsloth.cpu;

import dev.jsloth.api.Backend;
import dev.jsloth.api.spi.Availability;
import dev.jsloth.api.spi.BackendProvider;
import dev.jsloth.api.spi.BackendUnavailableException;

/** Registers the CPU backend. It runs wherever the JVM was started with {@code --add-modules jdk.incubator.vector}. */
public final class CpuBackendProvider implements BackendProvider {
    @Override
    public String name() {
        return "cpu";
    }

    @Override
    public int priority() {
        return 10;
    }

    @Override
    public Availability availability() {
        if (ModuleLayer.boot().findModule("jdk.incubator.vector").isEmpty())
            return Availability.unavailable("the JVM was started without --add-modules jdk.incubator.vector");
        try {
            int bits = jdk.incubator.vector.FloatVector.SPECIES_PREFERRED.vectorBitSize();
            return Availability.available(Parallel.THREADS + " threads, " + bits + "-bit vectors");
        } catch (LinkageError e) {
            return Availability.unavailable("Vector API not usable: " + e);
        }
    }

    @Override
    public Backend create() {
        Availability a = availability();
        if (!a.available()) throw new BackendUnavailableException("cpu backend unavailable: " + a.reason());
        return new CpuBackend();
    }
}
