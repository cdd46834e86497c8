package dev.jsloth.cuda;

import java.lang.foreign.MemorySegment;

/** One loaded kernel instantiation, launched on the device's stream. */
final class Kernel {
    private static final int DEFAULT_SHARED_LIMIT = 48 * 1024;

    private final CudaDevice device;
    private final MemorySegment function;
    private final String name;
    private int sharedLimit = DEFAULT_SHARED_LIMIT;

    Kernel(CudaDevice device, MemorySegment function, String name) {
        this.device = device;
        this.function = function;
        this.name = name;
    }

    String name() {
        return name;
    }

    /** Queues the kernel; raises its dynamic shared memory limit first when the launch needs more than 48 KiB. */
    void launch(Grid g, LaunchArgs args) {
        device.bind();
        if (g.sharedBytes() > device.maxSharedOptIn)
            throw new IllegalArgumentException(name + " needs " + g.sharedBytes() + " bytes of shared memory, the device allows "
                    + device.maxSharedOptIn);
        synchronized (this) {
            if (g.sharedBytes() > sharedLimit) {
                device.driver.setFunctionAttribute(function, CudaDriver.FUNC_ATTR_MAX_DYNAMIC_SHARED_SIZE_BYTES, g.sharedBytes(), name);
                sharedLimit = g.sharedBytes();
            }
        }
        KernelProfiler profiler = device.profiler;
        java.lang.foreign.MemorySegment start = profiler == null ? null : profiler.begin();
        device.driver.launch(function, g.gx(), g.gy(), g.gz(), g.bx(), g.by(), g.bz(), g.sharedBytes(), device.stream(),
                args.packReused(), name);
        if (profiler != null) profiler.end(name, start);
    }
}
