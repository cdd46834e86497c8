package dev.jsloth.cuda;

import java.lang.foreign.MemorySegment;

/**
 * One GPU as the backend uses it: its primary context (made current on every thread that calls in, see
 * {@link #bind()}), one stream on which all work is queued in order, and the properties kernels are sized by.
 */
final class CudaDevice implements AutoCloseable {
    final CudaDriver driver;
    final int handle;
    final String name;
    final int ccMajor;
    final int ccMinor;
    final int multiprocessors;
    /** The largest dynamic shared memory a block may opt in to, in bytes. */
    final int maxSharedOptIn;
    final long totalMemory;
    private final MemorySegment context;
    private final MemorySegment stream;
    /** GPU time per kernel when profiling is on ({@link KernelProfiler#ENABLED}), else null. */
    final KernelProfiler profiler;
    private final ThreadLocal<Boolean> bound = ThreadLocal.withInitial(() -> Boolean.FALSE);
    private boolean closed;

    CudaDevice(CudaDriver driver, int ordinal) {
        this.driver = driver;
        this.handle = driver.device(ordinal);
        this.name = driver.deviceName(handle);
        this.ccMajor = driver.attribute(CudaDriver.ATTR_COMPUTE_CAPABILITY_MAJOR, handle);
        this.ccMinor = driver.attribute(CudaDriver.ATTR_COMPUTE_CAPABILITY_MINOR, handle);
        this.multiprocessors = driver.attribute(CudaDriver.ATTR_MULTIPROCESSOR_COUNT, handle);
        this.maxSharedOptIn = Math.max(driver.attribute(CudaDriver.ATTR_MAX_SHARED_MEMORY_PER_BLOCK, handle),
                driver.attribute(CudaDriver.ATTR_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, handle));
        this.totalMemory = driver.totalMemory(handle);
        this.context = driver.retainPrimaryContext(handle);
        bind();
        this.stream = driver.createStream();
        this.profiler = KernelProfiler.ENABLED ? new KernelProfiler(this) : null;
    }

    /** Makes this device's context current on the calling thread (once per thread). */
    void bind() {
        if (!bound.get()) {
            driver.setCurrent(context);
            bound.set(Boolean.TRUE);
        }
    }

    MemorySegment stream() {
        return stream;
    }

    /**
     * The NVRTC target: "sm_86" for compute capability 8.6; for 9.0 "sm_90a", whose architecture-specific instructions
     * (wgmma) flash_attention.cu uses; such code runs on 9.0 alone, which is this GPU.
     */
    String architecture() {
        return "sm_" + ccMajor + ccMinor + (ccMajor == 9 && ccMinor == 0 ? "a" : "");
    }

    void synchronize() {
        bind();
        driver.synchronize(stream);
    }

    /** Milliseconds the GPU spent on the work {@code body} queues, measured with CUDA events on the stream. */
    float time(Runnable body) {
        bind();
        MemorySegment start = driver.createEvent(), end = driver.createEvent();
        try {
            driver.record(start, stream);
            body.run();
            driver.record(end, stream);
            driver.synchronizeEvent(end);
            return driver.elapsedMillis(start, end);
        } finally {
            driver.destroyEvent(start);
            driver.destroyEvent(end);
        }
    }

    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        bind();
        driver.synchronize(stream);
        if (profiler != null) {
            System.err.print(profiler.report(Integer.getInteger("jsloth.cuda.profileLines", 40)));
            profiler.close();
        }
        driver.destroyStream(stream);
        driver.releasePrimaryContext(handle);
    }
}
