package dev.jsloth.api.spi;

import dev.jsloth.api.Backend;

/**
 * Service-provider interface: each backend module registers one implementation in
 * {@code META-INF/services/dev.jsloth.api.spi.BackendProvider}. Providers must be cheap to construct; the
 * availability check may probe native libraries but must not throw.
 */
public interface BackendProvider {
    /** Short unique name used for selection, e.g. {@code cpu}, {@code cuda}, {@code opencl}. */
    String name();

    /** Higher wins when no backend is requested by name. */
    int priority();

    /** Whether this backend can run on this machine; when it cannot, the reason says why. */
    Availability availability();

    /**
     * How many devices of this kind the host shows, for launches of one process a device ({@code --gpus N}), whether
     * or not the one this process would pick is usable; empty for backends that are not one-a-device (the CPU's).
     */
    default java.util.OptionalInt deviceCount() {
        return java.util.OptionalInt.empty();
    }

    /** A new backend instance; throws {@link BackendUnavailableException} if unavailable. */
    Backend create();
}
