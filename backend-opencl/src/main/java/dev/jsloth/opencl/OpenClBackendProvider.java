package dev.jsloth.opencl;

import dev.jsloth.api.Backend;
import dev.jsloth.api.spi.Availability;
import dev.jsloth.api.spi.BackendProvider;
import dev.jsloth.api.spi.BackendUnavailableException;

/**
 * Registers the OpenCL backend ({@code opencl}, priority 5: below the CPU backend, so it runs only when asked for
 * with {@code -Djsloth.backend=opencl} or {@code JSLOTH_BACKEND=opencl}). It is available when JOCL's native
 * library and an OpenCL ICD loader load and a usable device exists; see {@link DeviceSelector} for the choice of
 * device and the {@code jsloth.opencl.platform} / {@code jsloth.opencl.device} filters.
 */
public final class OpenClBackendProvider implements BackendProvider {
    @Override
    public String name() {
        return "opencl";
    }

    @Override
    public int priority() {
        return 5;
    }

    @Override
    public Availability availability() {
        return switch (select()) {
            case DeviceSelector.Found f -> Availability.available(f.device().describe());
            case DeviceSelector.Missing m -> Availability.unavailable(m.reason());
        };
    }

    @Override
    public Backend create() {
        return switch (select()) {
            case DeviceSelector.Found f -> new OpenClBackend(f.device());
            case DeviceSelector.Missing m -> throw new BackendUnavailableException("opencl backend unavailable: " + m.reason());
        };
    }

    /** The device selection; a missing JOCL jar (classes that fail to link) is a reason, not an error. */
    private static DeviceSelector.Result select() {
        try {
            return DeviceSelector.select();
        } catch (LinkageError e) {
            return new DeviceSelector.Missing("the JOCL library is not usable (is org.jocl:jocl on the class path?): " + e);
        }
    }
}
