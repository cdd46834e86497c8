package dev.jsloth.cpu;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.spi.BackendTensor;

import java.lang.foreign.MemorySegment;

/** A tensor in native memory; a view shares its root's memory and liveness. */
final class CpuTensor extends BackendTensor<CpuTensor> {
    private final CpuBackend backend;
    private final MemorySegment segment;
    private final Codec codec;
    private final long heapBytes; // bytes held on the heap beside the segment (NF4 block scales)

    CpuTensor(CpuBackend backend, DType dtype, Shape shape, MemorySegment segment, CpuTensor root) {
        this(backend, dtype, shape, segment, root, dtype.isFloating() ? ElementCodec.of(dtype) : null, 0);
    }

    CpuTensor(CpuBackend backend, DType dtype, Shape shape, MemorySegment segment, CpuTensor root, Codec codec, long heapBytes) {
        super(dtype, shape, root);
        this.backend = backend;
        this.segment = segment;
        this.codec = codec;
        this.heapBytes = heapBytes;
    }

    /** How elements are read and written; null for integer tensors. */
    Codec codec() {
        return codec;
    }

    long heapBytes() {
        return heapBytes;
    }

    @Override
    public Backend backend() {
        return backend;
    }

    /** The memory, after checking the tensor is alive; read-only once the tensor (its root, for a view) is frozen. */
    MemorySegment segment() {
        checkAlive();
        return rootOrSelf().frozen ? segment.asReadOnly() : segment;
    }

    private volatile boolean frozen; // an owning tensor's: Backend.freeze
    private PanelCache panels;       // a frozen owning tensor's packed GEMM panels, made on first use

    /** Makes this owning tensor constant: its memory (and its views') read-only, its GEMM panels kept. */
    void freeze() {
        if (!owns()) throw new IllegalArgumentException("freeze takes an owning tensor, not a view: " + this);
        checkAlive();
        frozen = true;
    }

    /** The kept GEMM panels of a frozen owning tensor of a floating type; null otherwise (views included). */
    synchronized PanelCache panels() {
        if (!owns() || !frozen || isClosed() || !(codec instanceof ElementCodec)) return null;
        if (panels == null) panels = new PanelCache(backend::derivedBytes);
        return panels;
    }

    /** Frees the kept panels, if any (the tensor is being freed). */
    synchronized void freePanels() {
        if (panels != null) panels.free();
    }

    @Override
    protected CpuTensor viewAs(Shape newShape) {
        return new CpuTensor(backend, dtype(), newShape, segment, rootOrSelf(), codec, 0);
    }

    @Override
    protected CpuTensor rowsFrom(Shape rows, long elementOffset) {
        long bytesPerElem = dtype().bits() / 8;
        return new CpuTensor(backend, dtype(), rows, segment.asSlice(elementOffset * bytesPerElem, rows.numel() * bytesPerElem), rootOrSelf());
    }

    @Override
    protected void release() {
        backend.release(this);
    }

    /** The raw segment for the backend's release (no liveness check). */
    MemorySegment rawSegment() {
        return segment;
    }
}
