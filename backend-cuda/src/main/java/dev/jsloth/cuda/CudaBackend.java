package dev.jsloth.cuda;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Kernels;
import dev.jsloth.api.MemoryStats;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.quant.Nf4;
import dev.jsloth.api.quant.Nf4Scales;
import dev.jsloth.api.spi.LiveTensors;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.List;
import java.util.Locale;

/**
 * The CUDA backend: tensors in device memory from a caching allocator, kernels compiled from CUDA C++ by NVRTC at
 * first use (and cached on disk), GEMMs through cuBLASLt, everything queued in order on one stream. Calls may come
 * from any thread; each binds the device's context first. Host transfers ({@code upload*}, {@code download*})
 * synchronize the stream; everything else is asynchronous until {@link #synchronize()}.
 */
public final class CudaBackend implements Backend {
    static final ValueLayout.OfInt INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final CudaLibraries libs;
    final CudaDevice device;
    final DeviceAllocator allocator;
    private final KernelModules modules;
    final CublasGemm blas;
    private final CudaKernels kernels;
    private final LiveTensors<CudaTensor> live = new LiveTensors<>();
    private volatile boolean closed;

    CudaBackend(CudaLibraries libs) {
        this.libs = libs;
        this.device = new CudaDevice(libs.driver, libs.deviceOrdinal);
        CudaDriver d = libs.driver;
        this.allocator = new DeviceAllocator(new DeviceAllocator.Source() {
            @Override
            public long allocate(long bytes) {
                device.bind();
                return d.memAlloc(bytes);
            }

            @Override
            public void free(long pointer) {
                device.bind();
                d.memFree(pointer);
            }

            @Override
            public void synchronize() {
                device.synchronize();
            }
        });
        this.modules = new KernelModules(device, new KernelCompiler(libs.nvrtc, new KernelCache(KernelCache.defaultDirectory())));
        this.blas = new CublasGemm(libs.cublas, device, allocator);
        this.kernels = new CudaKernels(this);
    }

    @Override
    public String name() {
        return "cuda";
    }

    /** A device block; running out of device memory is a {@link dev.jsloth.api.DeviceOutOfMemoryException} with advice. */
    private DeviceAllocator.Block deviceAllocate(long bytes, String what) {
        return allocator.allocate(bytes, "cuda (" + device + ")", live.liveBytes(), "tensor " + what);
    }

    @Override
    public String description() {
        return String.format(Locale.ROOT, "CUDA, %s (%s, %d SMs, %.0f GiB)", device.name, device.architecture(),
                device.multiprocessors, device.totalMemory / (double) (1L << 30));
    }

    /**
     * NVIDIA's datasheet peak dense rates (no sparsity) for the GPUs we know: 16-bit tensor-core and FP32 FLOP/s.
     * Matched on the device name, most specific first; other GPUs report none.
     */
    private record Peak(String name, double sixteenBit, double f32) {
    }

    private static final List<Peak> PEAKS = List.of(new Peak("H100 PCIe", 756e12, 51.2e12), new Peak("H100 NVL", 835e12, 60e12),
            new Peak("H200 NVL", 835e12, 60e12), new Peak("H200", 989.4e12, 66.9e12), new Peak("H100", 989.4e12, 66.9e12),
            new Peak("A100", 312e12, 19.5e12));

    /**
     * BF16 on compute capability 8.0 and later: the kernels' 16-bit paths (tensor-core GEMMs through cuBLASLt, flash
     * attention) are the fast ones there. Earlier GPUs have no bf16 tensor cores (and the flash kernels decline them): F32.
     */
    @Override
    public DType preferredTrainingType() {
        return device.ccMajor >= 8 ? DType.BF16 : DType.F32;
    }

    @Override
    public java.util.OptionalDouble peakFlops(DType compute) {
        for (Peak p : PEAKS)
            if (device.name.contains(p.name())) {
                if (compute == DType.BF16 || compute == DType.F16) return java.util.OptionalDouble.of(p.sixteenBit());
                if (compute == DType.F32) return java.util.OptionalDouble.of(p.f32());
            }
        return java.util.OptionalDouble.empty();
    }

    /** The GPU's name, e.g. {@code NVIDIA H200}. */
    public String deviceName() {
        return device.name;
    }

    /** Milliseconds of GPU time for the work {@code body} queues (CUDA events around it on the stream). */
    public float timeMillis(Runnable body) {
        return device.time(body);
    }

    /** Bytes of device memory held from the driver (tensors, cached free blocks, cuBLASLt workspace). */
    public long reservedBytes() {
        return allocator.reservedBytes();
    }

    // ---------------------------------------------------------------- allocation

    @Override
    public Tensor allocate(DType dtype, Shape shape) {
        CudaTensor t = allocateUninitialized(dtype, shape);
        long bytes = dtype.byteSize(shape.numel());
        if (bytes > 0) libs.driver.memsetBytes(t.address(), (byte) 0, bytes, device.stream());
        return t;
    }

    @Override
    public Tensor allocateForOverwrite(DType dtype, Shape shape) {
        return allocateUninitialized(dtype, shape);
    }

    /** A new tensor whose contents are undefined (scratch that is written before it is read). */
    CudaTensor allocateUninitialized(DType dtype, Shape shape) {
        if (closed) throw new IllegalStateException("backend is closed");
        device.bind();
        DeviceAllocator.Block block = deviceAllocate(dtype.byteSize(shape.numel()), shape + " " + dtype);
        return register(new CudaTensor(this, dtype, shape, block, null));
    }

    private CudaTensor register(CudaTensor t) {
        return live.add(t, t.accountedBytes());
    }

    void release(CudaTensor t) {
        if (live.remove(t, t.accountedBytes())) {
            allocator.release(t.block());
            if (t.nf4Scales() != null) allocator.release(t.nf4Scales().block());
        }
    }

    // ---------------------------------------------------------------- transfers

    @Override
    public Tensor upload(DType dtype, Shape shape, double[] values) {
        if (!dtype.isFloating()) throw new IllegalArgumentException("upload needs a floating type, got " + dtype);
        if (values.length != shape.numel())
            throw new IllegalArgumentException(values.length + " values for shape " + shape);
        ElementType type = ElementType.of(dtype);
        CudaTensor t = allocateUninitialized(dtype, shape);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment host = a.allocate(Math.max(1, dtype.byteSize(values.length)), 8);
            for (int i = 0; i < values.length; i++) type.set(host, i, values[i]);
            toDevice(t.address(), host, dtype.byteSize(values.length));
        }
        return t;
    }

    @Override
    public Tensor uploadInts(Shape shape, int[] values) {
        if (values.length != shape.numel())
            throw new IllegalArgumentException(values.length + " values for shape " + shape);
        CudaTensor t = allocateUninitialized(DType.I32, shape);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment host = a.allocate(Math.max(4, 4L * values.length), 8);
            MemorySegment.copy(values, 0, host, INT, 0, values.length);
            toDevice(t.address(), host, 4L * values.length);
        }
        return t;
    }

    @Override
    public Tensor uploadRaw(DType dtype, Shape shape, MemorySegment bytes) {
        long want = dtype.byteSize(shape.numel());
        if (bytes.byteSize() != want)
            throw new IllegalArgumentException(shape + " " + dtype + " needs " + want + " bytes, got " + bytes.byteSize());
        CudaTensor t = allocateUninitialized(dtype, shape);
        toDevice(t.address(), bytes, want);
        return t;
    }

    @Override
    public Tensor uploadNf4(Shape shape, MemorySegment packedCodes, float[] blockScales) {
        return uploadNf4(shape, packedCodes, Nf4Scales.plain(blockScales));
    }

    /** Keeps double-quantized scales in that form on the device (see {@link Nf4DeviceScales}). */
    @Override
    public Tensor uploadNf4(Shape shape, MemorySegment packedCodes, Nf4Scales blockScales) {
        if (closed) throw new IllegalStateException("backend is closed");
        long bytes = DType.NF4.byteSize(shape.numel());
        if (shape.numel() % 2 != 0) throw new IllegalArgumentException("NF4 tensors need an even element count, got " + shape);
        if (packedCodes.byteSize() != bytes)
            throw new IllegalArgumentException("NF4 " + shape + " needs " + bytes + " packed bytes, got " + packedCodes.byteSize());
        int blocks = Nf4.blocks(shape.numel());
        if (blockScales.blocks() != blocks)
            throw new IllegalArgumentException("NF4 " + shape + " needs " + blocks + " block scales, got " + blockScales.blocks());
        device.bind();
        DeviceAllocator.Block codes = deviceAllocate(bytes, shape + " NF4"), scaleBlock = null;
        Nf4DeviceScales scales;
        try {
            scaleBlock = deviceAllocate(Nf4DeviceScales.bytesOf(blockScales), shape + " NF4 scales");
            toDevice(codes.pointer(), packedCodes, bytes);
            scales = Nf4DeviceScales.upload(this, scaleBlock, blockScales);
        } catch (RuntimeException e) {
            allocator.release(codes);
            if (scaleBlock != null) allocator.release(scaleBlock);
            throw e;
        }
        return register(new CudaTensor(this, DType.NF4, shape, codes, scales));
    }

    @Override
    public double[] download(Tensor t) {
        CudaTensor c = tensor(t);
        if (c.dtype() == DType.NF4) {
            try (CudaTensor wide = allocateUninitialized(DType.F64, c.shape())) {
                Conversions.dequantize(this, c, 0, c.numel(), wide.address(), ElementType.F64);
                return download(wide);
            }
        }
        if (!c.dtype().isFloating())
            throw new IllegalArgumentException("expected a floating tensor, got " + t.dtype() + " " + t.shape());
        ElementType type = ElementType.of(c.dtype());
        int n = Math.toIntExact(c.numel());
        double[] out = new double[n];
        try (Arena a = Arena.ofConfined()) {
            MemorySegment host = a.allocate(Math.max(8, (long) n * type.bytes), 8);
            toHost(host, c.address(), (long) n * type.bytes);
            for (int i = 0; i < n; i++) out[i] = type.get(host, i);
        }
        return out;
    }

    @Override
    public int[] downloadInts(Tensor t) {
        if (t.dtype() != DType.I32) throw new IllegalArgumentException("downloadInts needs an I32 tensor, got " + t.dtype());
        CudaTensor c = tensor(t);
        int n = Math.toIntExact(c.numel());
        int[] out = new int[n];
        try (Arena a = Arena.ofConfined()) {
            MemorySegment host = a.allocate(Math.max(4, 4L * n), 8);
            toHost(host, c.address(), 4L * n);
            MemorySegment.copy(host, INT, 0, out, 0, n);
        }
        return out;
    }

    /**
     * Copies host bytes to the device and waits (the host memory may be freed on return). Heap segments (e.g.
     * {@code MemorySegment.ofArray}) cannot be handed to native code, so they are staged in native memory.
     */
    void toDevice(long dst, MemorySegment src, long bytes) {
        if (bytes == 0) return;
        device.bind();
        if (src.isNative()) {
            libs.driver.copyHostToDevice(dst, src, bytes, device.stream());
            device.synchronize();
            return;
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment staged = a.allocate(bytes, 16);
            MemorySegment.copy(src, 0, staged, 0, bytes);
            libs.driver.copyHostToDevice(dst, staged, bytes, device.stream());
            device.synchronize();
        }
    }

    /** Copies device bytes to the host after all queued work, and waits. */
    void toHost(MemorySegment dst, long src, long bytes) {
        if (bytes == 0) return;
        device.bind();
        libs.driver.copyDeviceToHost(dst, src, bytes, device.stream());
        device.synchronize();
    }

    /** Queues a device-to-device copy. */
    void copyDevice(long dst, long src, long bytes) {
        if (bytes == 0) return;
        device.bind();
        libs.driver.copyDeviceToDevice(dst, src, bytes, device.stream());
    }

    /** Queues a fill of {@code bytes} zero bytes. */
    void zero(long dst, long bytes) {
        if (bytes == 0) return;
        device.bind();
        libs.driver.memsetBytes(dst, (byte) 0, bytes, device.stream());
    }

    // ---------------------------------------------------------------- kernels

    /** A tensor of this backend (checked: ours and alive). */
    CudaTensor tensor(Tensor t) {
        if (!(t instanceof CudaTensor c) || c.backend() != this)
            throw new IllegalArgumentException("tensor " + t + " does not belong to this CUDA backend");
        c.address();
        return c;
    }

    /** The device address of a tensor of this backend. */
    long ptr(Tensor t) {
        return tensor(t).address();
    }

    Kernel kernel(KernelId id, ElementType... types) {
        return modules.get(id, types);
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
        device.synchronize();
    }

    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        device.synchronize();
        live.closeAll();
        blas.close();
        modules.close();
        allocator.releaseCached();
        device.close();
    }

    /**
     * NCCL when one process per GPU trains together (WORLD_SIZE > 1); the TCP fallback, with a warning, when no NCCL
     * library loads.
     */
    @Override
    public dev.jsloth.api.distributed.Communicator communicator(dev.jsloth.api.distributed.ProcessGroup group) throws java.io.IOException {
        if (group.worldSize() == 1) return dev.jsloth.api.Backend.super.communicator(group);
        java.util.Optional<Nccl> nccl = Nccl.load();
        if (nccl.isEmpty()) {
            System.err.println("jsloth: NCCL not found (" + NativeLibraries.describeSearch(Nccl.LIBRARIES)
                    + "): gradients are all-reduced through host memory over TCP, which is slow");
            return dev.jsloth.api.Backend.super.communicator(group);
        }
        return NcclCommunicator.connect(this, nccl.get(), group);
    }
}
