package dev.jsloth.cpu;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Kernels;
import dev.jsloth.api.MemoryStats;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.spi.LiveTensors;
import jdk.incubator.vector.FloatVector;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/** The reference backend: native memory, Java Vector API kernels, all cores. */
public final class CpuBackend implements Backend {
    static final ValueLayout.OfInt INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    static {
        loadHeapSegmentClasses();
    }

    /**
     * Loads the JDK's heap-segment classes before any kernel is compiled. Until one is loaded, the JIT compiles every
     * segment access on the assumption that native segments are the only kind; the first heap segment then throws all
     * of that code away at once. The Vector API makes one on its own: {@code reinterpretAsInts} (the exp kernel), run
     * before it is compiled, goes through a heap byte segment. In a llama-25m step that happened at the first
     * attention forward: -XX:+PrintCompilation showed about 60 methods "marked for deoptimization", the GEMM kernels
     * among them, and 1.2-1.4 s passed before the wide GEMM kernel was compiled again.
     */
    private static void loadHeapSegmentClasses() {
        MemorySegment.ofArray(new byte[0]);
        MemorySegment.ofArray(new short[0]);
        MemorySegment.ofArray(new char[0]);
        MemorySegment.ofArray(new int[0]);
        MemorySegment.ofArray(new float[0]);
        MemorySegment.ofArray(new long[0]);
        MemorySegment.ofArray(new double[0]);
    }

    private final LiveTensors<CpuTensor> live = new LiveTensors<>();
    private final CpuKernels kernels = new CpuKernels(this);
    private final BlockCache blocks = new BlockCache();
    private final java.util.concurrent.atomic.AtomicInteger allocationsBeforeFailure = new java.util.concurrent.atomic.AtomicInteger(-1);
    private volatile boolean closed;

    /**
     * Fault injection for tests of failure paths (a caller's own operators, or an application's recovery from running
     * out of memory): after {@code allocations} more tensor allocations succeed, the next one throws
     * {@link dev.jsloth.api.DeviceOutOfMemoryException} as a real shortage would, once; a negative value turns it off.
     */
    public void failAllocationAfter(int allocations) {
        allocationsBeforeFailure.set(allocations);
    }

    @Override
    public String name() {
        return "cpu";
    }

    @Override
    public String description() {
        return "CPU, " + Parallel.THREADS + " threads, " + FloatVector.SPECIES_PREFERRED.vectorBitSize() + "-bit vectors";
    }

    @Override
    public Tensor allocate(DType dtype, Shape shape) {
        return allocate(dtype, shape, true);
    }

    /** Contents unspecified: a kept block is handed out as it is ({@link BlockCache}). */
    @Override
    public Tensor allocateForOverwrite(DType dtype, Shape shape) {
        return allocate(dtype, shape, false);
    }

    private Tensor allocate(DType dtype, Shape shape, boolean zeroed) {
        if (closed) throw new IllegalStateException("backend is closed");
        long bytes = dtype.byteSize(shape.numel());
        MemorySegment seg = block(bytes, zeroed, shape + " " + dtype);
        return live.add(new CpuTensor(this, dtype, shape, seg, null), bytes);
    }

    @Override
    public Tensor uploadNf4(Shape shape, MemorySegment packedCodes, float[] blockScales) {
        if (closed) throw new IllegalStateException("backend is closed");
        long bytes = DType.NF4.byteSize(shape.numel());
        if (shape.numel() % 2 != 0) throw new IllegalArgumentException("NF4 tensors need an even element count, got " + shape);
        if (packedCodes.byteSize() != bytes)
            throw new IllegalArgumentException("NF4 " + shape + " needs " + bytes + " packed bytes, got " + packedCodes.byteSize());
        int blocks = dev.jsloth.api.quant.Nf4.blocks(shape.numel());
        if (blockScales.length != blocks)
            throw new IllegalArgumentException("NF4 " + shape + " needs " + blocks + " block scales, got " + blockScales.length);
        MemorySegment seg = block(bytes, false, shape + " NF4");
        MemorySegment.copy(packedCodes, 0, seg, 0, bytes);
        long heap = 4L * blocks;
        return live.add(new CpuTensor(this, DType.NF4, shape, seg, null, new Nf4Codec(blockScales.clone()), heap), bytes + heap);
    }

    private MemorySegment block(long bytes, boolean zeroed, String what) {
        if (allocationsBeforeFailure.get() >= 0 && allocationsBeforeFailure.getAndDecrement() == 0)
            throw new dev.jsloth.api.DeviceOutOfMemoryException("cpu", bytes, live.liveBytes(), "tensor " + what + " (injected: failAllocationAfter)");
        MemorySegment seg = blocks.take(bytes, zeroed);
        if (seg == null) throw new dev.jsloth.api.DeviceOutOfMemoryException("cpu", bytes, live.liveBytes(), "tensor " + what);
        return seg;
    }

    void release(CpuTensor t) {
        if (live.remove(t, t.rawSegment().byteSize() + t.heapBytes())) {
            t.freePanels();
            blocks.give(t.rawSegment());
        }
    }

    /** Bytes held for tensors beside their own memory (kept GEMM panels): counted as live memory. */
    void derivedBytes(long bytes) {
        live.addDerivedBytes(bytes);
    }

    @Override
    public void freeze(Tensor t) {
        if (!(t instanceof CpuTensor c) || c.backend() != this)
            throw new IllegalArgumentException("tensor " + t + " does not belong to this CPU backend");
        c.freeze();
    }

    /** The kept panels of a frozen tensor used whole as a GEMM operand (null for anything else). */
    PanelCache panels(Tensor t) {
        return t instanceof CpuTensor c && c.backend() == this ? c.panels() : null;
    }

    @Override
    public Tensor upload(DType dtype, Shape shape, double[] values) {
        if (!dtype.isFloating()) throw new IllegalArgumentException("upload needs a floating type, got " + dtype);
        if (values.length != shape.numel())
            throw new IllegalArgumentException(values.length + " values for shape " + shape);
        Tensor t = allocateForOverwrite(dtype, shape);
        ElementCodec.of(dtype).write(seg(t), 0, values, 0, values.length);
        return t;
    }

    @Override
    public Tensor uploadInts(Shape shape, int[] values) {
        if (values.length != shape.numel())
            throw new IllegalArgumentException(values.length + " values for shape " + shape);
        Tensor t = allocateForOverwrite(DType.I32, shape);
        MemorySegment.copy(values, 0, seg(t), INT, 0, values.length);
        return t;
    }

    @Override
    public Tensor uploadRaw(DType dtype, Shape shape, MemorySegment bytes) {
        long want = dtype.byteSize(shape.numel());
        if (bytes.byteSize() != want)
            throw new IllegalArgumentException(shape + " " + dtype + " needs " + want + " bytes, got " + bytes.byteSize());
        Tensor t = allocateForOverwrite(dtype, shape);
        MemorySegment.copy(bytes, 0, seg(t), 0, want);
        return t;
    }

    @Override
    public double[] download(Tensor t) {
        Codec c = codec(t);
        double[] out = new double[Math.toIntExact(t.numel())];
        c.read(seg(t), 0, out, 0, out.length);
        return out;
    }

    /** The element codec of a floating or NF4 tensor of this backend. */
    Codec codec(Tensor t) {
        seg(t);
        Codec c = ((CpuTensor) t).codec();
        if (c == null) throw new IllegalArgumentException("expected a floating tensor, got " + t.dtype() + " " + t.shape());
        return c;
    }

    @Override
    public int[] downloadInts(Tensor t) {
        if (t.dtype() != DType.I32) throw new IllegalArgumentException("downloadInts needs an I32 tensor, got " + t.dtype());
        int[] out = new int[Math.toIntExact(t.numel())];
        MemorySegment.copy(seg(t), INT, 0, out, 0, out.length);
        return out;
    }

    /** The memory of a tensor of this backend (checked: alive, and ours). */
    MemorySegment seg(Tensor t) {
        if (!(t instanceof CpuTensor c) || c.backend() != this)
            throw new IllegalArgumentException("tensor " + t + " does not belong to this CPU backend");
        return c.segment();
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
        // kernels run synchronously
    }

    @Override
    public void close() {
        closed = true;
        blocks.shutDown(); // tensors closed from here on free their memory at once
        live.closeAll();
    }
}
