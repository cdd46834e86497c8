package dev.jsloth.cuda;

import java.util.List;
import java.util.Map;

/**
 * Compiles a kernel source for this GPU with NVRTC ({@code --gpu-architecture=sm_XY -std=c++17}), through the
 * {@link KernelCache}. A compiler that does not know the GPU's architecture falls back to PTX for
 * {@code compute_XY}, which the driver compiles when the module loads.
 */
final class KernelCompiler {
    private static final int NVRTC_ERROR_INVALID_OPTION = 5;

    private final Nvrtc nvrtc;
    private final KernelCache cache;
    private final String nvrtcVersion;

    KernelCompiler(Nvrtc nvrtc, KernelCache cache) {
        this.nvrtc = nvrtc;
        this.cache = cache;
        this.nvrtcVersion = nvrtc.version();
    }

    static List<String> options(String architecture) {
        return List.of("--gpu-architecture=" + architecture, "-std=c++17");
    }

    /** The compiled program of {@code file} instantiating {@code nameExpressions}, for {@code sm_XY}. */
    Nvrtc.Program compile(String file, List<String> nameExpressions, String smArchitecture) {
        try {
            return compileCached(file, nameExpressions, options(smArchitecture));
        } catch (CudaException e) {
            if (e.code() != NVRTC_ERROR_INVALID_OPTION) throw e;
            return compileCached(file, nameExpressions, options(smArchitecture.replace("sm_", "compute_")));
        }
    }

    private Nvrtc.Program compileCached(String file, List<String> nameExpressions, List<String> options) {
        String source = KernelSources.read(file);
        Map<String, String> headers = KernelSources.headers();
        String key = KernelCache.key(nvrtcVersion, options, nameExpressions, headers, source);
        return cache.load(key).orElseGet(() -> {
            Nvrtc.Program p = nvrtc.compile(file, source, headers, options, nameExpressions);
            cache.store(key, p);
            return p;
        });
    }
}
