package dev.jsloth.opencl;

import dev.jsloth.api.Allocations;
import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.DeviceOutOfMemoryException;
import dev.jsloth.api.Kernels;
import dev.jsloth.api.MemoryStats;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.spi.LiveTensors;
import dev.jsloth.api.quant.Nf4;
import org.jocl.CL;
import org.jocl.CLException;
import org.jocl.Pointer;
import org.jocl.cl_command_queue;
import org.jocl.cl_context;
import org.jocl.cl_context_properties;
import org.jocl.cl_device_id;
import org.jocl.cl_mem;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * A backend on one OpenCL device: a context, an in-order command queue, the {@link KernelLibrary} and the live
 * tensors. Kernels are enqueued asynchronously; downloads (and {@link #synchronize()}) wait for them. Memory
 * statistics count the device bytes of live tensors (their buffers' sizes: size classes of {@link BufferPool}), scratch
 * included.
 */
final class OpenClBackend implements Backend {
    /** Host staging for transfers is done in pieces of at most this many bytes. */
    private static final long TRANSFER_CHUNK = 64L << 20;

    private final OpenClDevice device;
    private final LaunchConfig config;
    private final cl_context context;
    private final cl_command_queue queue;
    private final KernelLibrary library;
    private final cl_mem placeholder;
    private final OpenClKernels kernels;
    private final Object launchLock = new Object();
    private final LiveTensors<OpenClTensor> live = new LiveTensors<>();
    private volatile boolean closed;
    private final KernelProfiler profiler = KernelProfiler.ENABLED ? new KernelProfiler() : null;
    private final BufferPool pool;

    OpenClBackend(OpenClDevice device) {
        this.device = device;
        this.config = LaunchConfig.forDevice(device);
        this.pool = new BufferPool(this::createBuffer, () -> CL.clFinish(queue()), device.globalMemBytes() / 4);
        cl_context_properties props = new cl_context_properties();
        props.addProperty(CL.CL_CONTEXT_PLATFORM, device.platform());
        this.context = CL.clCreateContext(props, 1, new cl_device_id[]{device.device()}, null, null, null);
        cl_command_queue q = null;
        KernelLibrary lib = null;
        cl_mem ph = null;
        try {
            q = createQueue(context, device.device());
            lib = new KernelLibrary(context, device, config);
            ph = CL.clCreateBuffer(context, CL.CL_MEM_READ_WRITE, 16, null, null);
        } catch (RuntimeException e) {
            if (lib != null) lib.close();
            if (q != null) CL.clReleaseCommandQueue(q);
            CL.clReleaseContext(context);
            throw e;
        }
        this.queue = q;
        this.library = lib;
        this.placeholder = ph;
        this.kernels = new OpenClKernels(this);
    }

    @SuppressWarnings("deprecation")
    private static cl_command_queue createQueue(cl_context context, cl_device_id device) {
        // clCreateCommandQueue is deprecated from OpenCL 2.0 but is the one call every 1.2+ device accepts
        return CL.clCreateCommandQueue(context, device, KernelProfiler.ENABLED ? CL.CL_QUEUE_PROFILING_ENABLE : 0, null);
    }

    @Override
    public String name() {
        return "opencl";
    }

    @Override
    public String description() {
        return "OpenCL, " + device.describe();
    }

    /** BF16 where the tensor-core kernels run (gemm_mma.cl, flash_attention.cl on NVIDIA GPUs), else F32. */
    @Override
    public DType preferredTrainingType() {
        return config.tensorCores() ? DType.BF16 : DType.F32;
    }

    OpenClDevice device() {
        return device;
    }

    LaunchConfig config() {
        return config;
    }

    KernelLibrary library() {
        return library;
    }

    cl_command_queue queue() {
        return queue;
    }

    /** The per-kernel timer, or null when profiling is off. */
    KernelProfiler profiler() {
        return profiler;
    }

    Object launchLock() {
        return launchLock;
    }

    /** A 16-byte buffer bound to pointer arguments a kernel will not read (absent segments, scales of non-NF4). */
    cl_mem placeholder() {
        return placeholder;
    }

    /** Throws when double precision is needed but the device lacks it. */
    void require(Precision p) {
        if (p == Precision.DOUBLE && !device.fp64())
            throw new UnsupportedOperationException("F64 compute is not supported on " + device.name()
                    + " (the device has no cl_khr_fp64); use F32/BF16/F16 tensors or another backend");
    }

    // ---------------------------------------------------------------- allocation and transfer

    private static long deviceSize(long bytes) {
        return Math.max(8, Launch.roundUp(bytes, 8));
    }

    private OpenClTensor track(DType dtype, Shape shape, cl_mem buffer, cl_mem scales, long deviceBytes) {
        return live.add(new OpenClTensor(this, dtype, shape, buffer, scales, 0, deviceBytes, null), deviceBytes);
    }

    private cl_mem createBuffer(long bytes) {
        if (closed) throw new IllegalStateException("backend is closed");
        requireAllocatable(bytes);
        try {
            return CL.clCreateBuffer(context, CL.CL_MEM_READ_WRITE, bytes, null, null);
        } catch (CLException e) {
            if (isOutOfMemory(e)) throw outOfMemory(bytes, CL.stringFor_errorCode(e.getStatus()));
            throw e;
        }
    }

    /** A buffer of {@code bytes} within the device's largest single allocation, else a {@link DeviceOutOfMemoryException}. */
    private void requireAllocatable(long bytes) {
        if (bytes > device.maxAllocBytes())
            throw outOfMemory(bytes, "one OpenCL buffer may hold at most " + device.maxAllocBytes() + " bytes on this device");
    }

    /** The driver's out-of-memory answers (NVIDIA reports a failed reservation at the first enqueue that uses a buffer). */
    static boolean isOutOfMemory(CLException e) {
        return e.getStatus() == CL.CL_MEM_OBJECT_ALLOCATION_FAILURE || e.getStatus() == CL.CL_OUT_OF_RESOURCES
                || e.getStatus() == CL.CL_OUT_OF_HOST_MEMORY;
    }

    DeviceOutOfMemoryException outOfMemory(long bytes, String detail) {
        return new DeviceOutOfMemoryException(device.name(), bytes, live.stats().liveBytes(), detail);
    }

    /** Runs an enqueue, the driver's out-of-memory answer turned into a {@link DeviceOutOfMemoryException}. */
    void enqueue(String what, long bytes, Runnable call) {
        try {
            call.run();
        } catch (CLException e) {
            if (isOutOfMemory(e)) throw outOfMemory(bytes, what + ": " + CL.stringFor_errorCode(e.getStatus()));
            throw e;
        }
    }

    /** Closes {@code t} if {@code work} fails (a tensor registered but never handed over would stay live). */
    private static <T extends Tensor> T filled(T t, Runnable work) {
        try (Allocations made = new Allocations()) {
            made.add(t);
            work.run();
            return made.handOver(t);
        }
    }

    /** A tensor with uninitialised contents, in a buffer of the pool (its size class is the tensor's device bytes). */
    private OpenClTensor create(DType dtype, Shape shape) {
        long bytes = deviceSize(dtype.byteSize(shape.numel()));
        requireAllocatable(bytes); // before the pool, which would empty its cache to retry what cannot fit
        BufferPool.Block b = pool.acquire(bytes);
        return track(dtype, shape, b.buffer(), null, b.size());
    }

    @Override
    public Tensor allocate(DType dtype, Shape shape) {
        OpenClTensor t = create(dtype, shape);
        return filled(t, () -> enqueue("zero-fill", t.deviceBytes(),
                () -> CL.clEnqueueFillBuffer(queue, t.rawBuffer(), Pointer.to(new byte[]{0}), 1, 0, t.deviceBytes(), 0, null, null)));
    }

    @Override
    public Tensor allocateForOverwrite(DType dtype, Shape shape) {
        return create(dtype, shape);
    }

    /** A scratch tensor of {@code count} {@code real}s for a kernel; closing it right after the enqueue is safe. */
    OpenClTensor scratch(Precision p, long count) {
        return create(p.scratchType(), Shape.of(Math.toIntExact(Math.max(1, count))));
    }

    void release(OpenClTensor t) {
        if (live.remove(t, t.deviceBytes())) {
            if (t.rawScales() == null) { // back to the pool: later commands on the in-order queue run after its users
                pool.release(new BufferPool.Block(t.rawBuffer(), t.deviceBytes()));
            } else { // NF4 weights (long-lived, two buffers): OpenCL frees them once their enqueued commands finish
                CL.clReleaseMemObject(t.rawBuffer());
                CL.clReleaseMemObject(t.rawScales());
            }
        }
    }

    @Override
    public Tensor upload(DType dtype, Shape shape, double[] values) {
        if (!dtype.isFloating()) throw new IllegalArgumentException("upload needs a floating type, got " + dtype);
        if (values.length != shape.numel())
            throw new IllegalArgumentException(values.length + " values for shape " + shape);
        OpenClTensor t = create(dtype, shape);
        return filled(t, () -> {
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment host = arena.allocate(Math.max(1, dtype.byteSize(values.length)), 8);
                HostCodec.encode(dtype, values, host);
                write(t.rawBuffer(), 0, host.asSlice(0, dtype.byteSize(values.length)));
            }
        });
    }

    @Override
    public Tensor uploadInts(Shape shape, int[] values) {
        if (values.length != shape.numel())
            throw new IllegalArgumentException(values.length + " values for shape " + shape);
        OpenClTensor t = create(DType.I32, shape);
        return filled(t, () -> {
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment host = arena.allocate(Math.max(1, 4L * values.length), 8);
                MemorySegment.copy(values, 0, host, HostCodec.INT, 0, values.length);
                write(t.rawBuffer(), 0, host.asSlice(0, 4L * values.length));
            }
        });
    }

    @Override
    public Tensor uploadRaw(DType dtype, Shape shape, MemorySegment bytes) {
        long want = dtype.byteSize(shape.numel());
        if (bytes.byteSize() != want)
            throw new IllegalArgumentException(shape + " " + dtype + " needs " + want + " bytes, got " + bytes.byteSize());
        OpenClTensor t = create(dtype, shape);
        return filled(t, () -> write(t.rawBuffer(), 0, bytes));
    }

    @Override
    public Tensor uploadNf4(Shape shape, MemorySegment packedCodes, float[] blockScales) {
        long bytes = DType.NF4.byteSize(shape.numel());
        if (shape.numel() % 2 != 0) throw new IllegalArgumentException("NF4 tensors need an even element count, got " + shape);
        if (packedCodes.byteSize() != bytes)
            throw new IllegalArgumentException("NF4 " + shape + " needs " + bytes + " packed bytes, got " + packedCodes.byteSize());
        int blocks = Nf4.blocks(shape.numel());
        if (blockScales.length != blocks)
            throw new IllegalArgumentException("NF4 " + shape + " needs " + blocks + " block scales, got " + blockScales.length);
        long codeSize = deviceSize(bytes), scaleSize = deviceSize(4L * blocks);
        cl_mem codes = createBuffer(codeSize);
        cl_mem scales;
        try {
            scales = createBuffer(scaleSize);
        } catch (RuntimeException | Error e) {
            CL.clReleaseMemObject(codes);
            throw e;
        }
        OpenClTensor t = track(DType.NF4, shape, codes, scales, codeSize + scaleSize);
        return filled(t, () -> {
            write(codes, 0, packedCodes);
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment host = arena.allocate(4L * blocks, 4);
                MemorySegment.copy(blockScales, 0, host, HostCodec.FLOAT, 0, blocks);
                write(scales, 0, host);
            }
        });
    }

    @Override
    public double[] download(Tensor t) {
        OpenClTensor c = tensor(t);
        double[] out = new double[Math.toIntExact(c.numel())];
        try (Arena arena = Arena.ofConfined()) {
            if (c.dtype() == DType.NF4) {
                if (c.scales() == null) throw new IllegalArgumentException("NF4 tensor " + c.shape() + " has no block scales (not made by uploadNf4)");
                MemorySegment packed = arena.allocate(Math.max(1, DType.NF4.byteSize(out.length)));
                read(c.buffer(), 0, packed.asSlice(0, DType.NF4.byteSize(out.length)));
                int blocks = Nf4.blocks(out.length);
                MemorySegment sc = arena.allocate(Math.max(1, 4L * blocks), 4);
                read(c.scales(), 0, sc.asSlice(0, 4L * blocks));
                HostCodec.decodeNf4(packed, sc.toArray(HostCodec.FLOAT), out);
                return out;
            }
            if (!c.dtype().isFloating())
                throw new IllegalArgumentException("expected a floating tensor, got " + c.dtype() + " " + c.shape());
            long bytes = c.dtype().byteSize(out.length);
            MemorySegment host = arena.allocate(Math.max(1, bytes), 8);
            read(c.buffer(), c.byteOffset(), host.asSlice(0, bytes));
            HostCodec.decode(c.dtype(), host, out);
        }
        return out;
    }

    @Override
    public int[] downloadInts(Tensor t) {
        OpenClTensor c = tensor(t);
        if (c.dtype() != DType.I32) throw new IllegalArgumentException("downloadInts needs an I32 tensor, got " + c.dtype());
        int n = Math.toIntExact(c.numel());
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment host = arena.allocate(Math.max(1, 4L * n), 8);
            read(c.buffer(), c.byteOffset(), host.asSlice(0, 4L * n));
            return host.asSlice(0, 4L * n).toArray(HostCodec.INT);
        }
    }

    /** Blocking copy of host bytes into a buffer, through a native staging area when the source is on the heap. */
    private void write(cl_mem dst, long dstOffset, MemorySegment src) {
        enqueue("writing to the device", src.byteSize(), () -> writeChunks(dst, dstOffset, src));
    }

    private void writeChunks(cl_mem dst, long dstOffset, MemorySegment src) {
        long size = src.byteSize();
        if (size == 0) return;
        if (src.isNative()) {
            for (long at = 0; at < size; at += TRANSFER_CHUNK) {
                long n = Math.min(TRANSFER_CHUNK, size - at);
                CL.clEnqueueWriteBuffer(queue, dst, true, dstOffset + at, n, Pointer.to(src.asSlice(at, n).asByteBuffer()), 0, null, null);
            }
            return;
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment staging = arena.allocate(Math.min(size, TRANSFER_CHUNK), 8);
            for (long at = 0; at < size; at += TRANSFER_CHUNK) {
                long n = Math.min(TRANSFER_CHUNK, size - at);
                MemorySegment.copy(src, at, staging, 0, n);
                CL.clEnqueueWriteBuffer(queue, dst, true, dstOffset + at, n, Pointer.to(staging.asSlice(0, n).asByteBuffer()), 0, null, null);
            }
        }
    }

    /** Blocking read of {@code dst.byteSize()} bytes (waits for every kernel enqueued before it). */
    private void read(cl_mem src, long srcOffset, MemorySegment dst) {
        long size = dst.byteSize();
        if (size == 0) return;
        for (long at = 0; at < size; at += TRANSFER_CHUNK) {
            long n = Math.min(TRANSFER_CHUNK, size - at);
            CL.clEnqueueReadBuffer(queue, src, true, srcOffset + at, n, Pointer.to(dst.asSlice(at, n).asByteBuffer()), 0, null, null);
        }
    }

    /** Device-side byte copy between buffers (same-type {@link Kernels#copy}). */
    void copyBytes(OpenClTensor src, OpenClTensor dst, long bytes) {
        if (bytes == 0) return;
        CL.clEnqueueCopyBuffer(queue, src.buffer(), dst.buffer(), src.byteOffset(), dst.byteOffset(), bytes, 0, null, null);
    }

    /** Sets the bytes of a tensor to zero. */
    void zero(OpenClTensor t, long bytes) {
        if (bytes == 0) return;
        CL.clEnqueueFillBuffer(queue, t.buffer(), Pointer.to(new byte[]{0}), 1, t.byteOffset(), bytes, 0, null, null);
    }

    /** A tensor of this backend, checked alive. */
    OpenClTensor tensor(Tensor t) {
        if (!(t instanceof OpenClTensor c) || c.owner() != this)
            throw new IllegalArgumentException("tensor " + t + " does not belong to this OpenCL backend");
        c.buffer();
        return c;
    }

    @Override
    public Kernels kernels() {
        return kernels;
    }

    @Override
    public MemoryStats memoryStats() {
        return live.stats();
    }

    @Override
    public void resetPeak() {
        live.resetPeak();
    }

    @Override
    public void synchronize() {
        if (!closed) CL.clFinish(queue);
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        // every step runs even if one before it fails (a deferred allocation failure can surface at clFinish); the
        // first failure is thrown at the end
        Allocations.closeInOrder(
                () -> CL.clFinish(queue),
                () -> {
                    if (profiler != null) System.err.print(profiler.report(40));
                },
                live::closeAll,
                pool::releaseCached,
                library::close,
                () -> CL.clReleaseMemObject(placeholder),
                () -> CL.clReleaseCommandQueue(queue),
                () -> CL.clReleaseContext(context));
    }
}
