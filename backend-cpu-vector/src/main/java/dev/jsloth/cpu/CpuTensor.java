package dev.jsloth.cpu;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;

import java.lang.foreign.MemorySegment;

/** A tensor in native memory; a view shares its root's memory and liveness. */
final class CpuTensor implements Tensor {
    private final CpuBackend backend;
    private final DType dtype;
    private final Shape shape;
    private final MemorySegment segment;
    private final CpuTensor root; // null for an owning tensor
    private final Codec codec;
    private final long heapBytes; // bytes held on the heap beside the segment (NF4 block scales)
    private volatile boolean closed;

    CpuTensor(CpuBackend backend, DType dtype, Shape shape, MemorySegment segment, CpuTensor root) {
        this(backend, dtype, shape, segment, root, dtype.isFloating() ? ElementCodec.of(dtype) : null, 0);
    }

    CpuTensor(CpuBackend backend, DType dtype, Shape shape, MemorySegment segment, CpuTensor root, Codec codec, long heapBytes) {
        this.backend = backend;
        this.dtype = dtype;
        this.shape = shape;
        this.segment = segment;
        this.root = root;
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

    @Override
    public DType dtype() {
        return dtype;
    }

    @Override
    public Shape shape() {
        return shape;
    }

    /** The memory, after checking the tensor is alive. */
    MemorySegment segment() {
        if (isClosed()) throw new IllegalStateException("tensor " + shape + " " + dtype + " is closed");
        return segment;
    }

    @Override
    public Tensor view(Shape newShape) {
        if (newShape.numel() != shape.numel())
            throw new IllegalArgumentException("cannot view " + shape + " as " + newShape);
        return new CpuTensor(backend, dtype, newShape, segment(), owner(), codec, 0);
    }

    @Override
    public Tensor rows(int start, int count) {
        if (shape.rank() == 0) throw new IllegalArgumentException("a scalar has no rows");
        if (start < 0 || count < 0 || start + count > shape.dim(0))
            throw new IndexOutOfBoundsException("rows [" + start + ", " + (start + count) + ") of " + shape);
        if (dtype == DType.NF4) throw new IllegalArgumentException("row views of packed NF4 tensors are not supported");
        long perRow = shape.numel() / Math.max(1, shape.dim(0));
        long bytesPerElem = dtype.bits() / 8;
        MemorySegment s = segment().asSlice(start * perRow * bytesPerElem, count * perRow * bytesPerElem);
        return new CpuTensor(backend, dtype, shape.withFirst(count), s, owner());
    }

    private CpuTensor owner() {
        return root == null ? this : root;
    }

    boolean owns() {
        return root == null;
    }

    @Override
    public boolean isClosed() {
        return root == null ? closed : root.isClosed();
    }

    @Override
    public void close() {
        if (root != null || closed) return;
        synchronized (this) {
            if (closed) return;
            closed = true;
        }
        backend.release(this);
    }

    /** The raw segment for the backend's release (no liveness check). */
    MemorySegment rawSegment() {
        return segment;
    }

    @Override
    public String toString() {
        return "CpuTensor" + shape + " " + dtype + (isClosed() ? " (closed)" : "");
    }
}
