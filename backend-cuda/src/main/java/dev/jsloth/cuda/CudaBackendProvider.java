package dev.jsloth.cuda;

import dev.jsloth.api.Backend;
import dev.jsloth.api.spi.Availability;
import dev.jsloth.api.spi.BackendProvider;
import dev.jsloth.api.spi.BackendUnavailableException;

/**
 * Registers the CUDA backend ({@code cuda}, priority 100: a GPU wins when one is usable). Available when the
 * NVIDIA driver ({@code libcuda.so.1}) initialises, a device is present, and NVRTC and cuBLASLt load; otherwise
 * the reason names what is missing. Device selection: {@code -Djsloth.cuda.device=N} or {@code JSLOTH_CUDA_DEVICE}.
 */
public final class CudaBackendProvider implements BackendProvider {
    @Override
    public String name() {
        return "cuda";
    }

    @Override
    public int priority() {
        return 100;
    }

    @Override
    public Availability availability() {
        return CudaLibraries.probe().availability();
    }

    /** The devices the driver shows (after {@code CUDA_VISIBLE_DEVICES}); 0 without a driver. */
    @Override
    public java.util.OptionalInt deviceCount() {
        return java.util.OptionalInt.of(CudaLibraries.probe().deviceCount());
    }

    @Override
    public Backend create() {
        CudaLibraries.Probe p = CudaLibraries.probe();
        if (!p.availability().available())
            throw new BackendUnavailableException("cuda backend unavailable: " + p.availability().reason());
        return new CudaBackend(p.libraries());
    }
}
