package dev.jsloth.cuda;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;

/**
 * A tensor in device memory. An owning tensor holds a block of the backend's caching allocator (and, for NF4, a
 * second block with the float32 block scales); a view shares its root's memory and liveness.
 */
final class CudaTensor implements Tensor {
    private final CudaBackend backend;
    private final DType dtype;
    private final Shape shape;
    private final long address;
    private final CudaTensor root; // null for an owning tensor
    private final DeviceAllocator.Block block;
    private final DeviceAllocator.Block scales; // NF4 block scales, owned by the root
    private volatile boolean closed;

    CudaTensor(CudaBackend backend, DType dtype, Shape shape, DeviceAllocator.Block block, DeviceAllocator.Block scales) {
        this(backend, dtype, shape, block.pointer(), null, block, scales);
    }

    private CudaTensor(CudaBackend backend, DType dtype, Shape shape, long address, CudaTensor root,
                       DeviceAllocator.Block block, DeviceAllocator.Block scales) {
        this.backend = backend;
        this.dtype = dtype;
        this.shape = shape;
        this.address = address;
        this.root = root;
        this.block = block;
        this.scales = scales;
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

    /** The device address of element 0, after checking the tensor is alive. */
    long address() {
        if (isClosed()) throw new IllegalStateException("tensor " + shape + " " + dtype + " is closed");
        return address;
    }

    /** The device address of an NF4 tensor's float32 block scales. */
    long scalesAddress() {
        address();
        return owner().scales.pointer();
    }

    /** Bytes of device memory this tensor accounts for in the memory statistics (0 for views). */
    long accountedBytes() {
        if (root != null) return 0;
        long bytes = dtype.byteSize(shape.numel());
        if (dtype == DType.NF4) bytes += 4L * dev.jsloth.api.quant.Nf4.blocks(shape.numel());
        return bytes;
    }

    DeviceAllocator.Block block() {
        return block;
    }

    DeviceAllocator.Block scalesBlock() {
        return scales;
    }

    @Override
    public Tensor view(Shape newShape) {
        if (newShape.numel() != shape.numel())
            throw new IllegalArgumentException("cannot view " + shape + " as " + newShape);
        return new CudaTensor(backend, dtype, newShape, address(), owner(), null, null);
    }

    @Override
    public Tensor rows(int start, int count) {
        if (shape.rank() == 0) throw new IllegalArgumentException("a scalar has no rows");
        if (start < 0 || count < 0 || start + count > shape.dim(0))
            throw new IndexOutOfBoundsException("rows [" + start + ", " + (start + count) + ") of " + shape);
        if (dtype == DType.NF4) throw new IllegalArgumentException("row views of packed NF4 tensors are not supported");
        long perRow = shape.numel() / Math.max(1, shape.dim(0));
        long bytesPerElem = dtype.bits() / 8;
        return new CudaTensor(backend, dtype, shape.withFirst(count), address() + start * perRow * bytesPerElem, owner(), null, null);
    }

    private CudaTensor owner() {
        return root == null ? this : root;
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

    @Override
    public String toString() {
        return "CudaTensor" + shape + " " + dtype + (isClosed() ? " (closed)" : "");
    }
}
