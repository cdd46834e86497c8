package dev.jsloth.opencl;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import org.jocl.cl_mem;

/**
 * A tensor in an OpenCL buffer. A view ({@link #view}, {@link #rows}) shares its root's buffer at an element
 * offset and its root's liveness; kernels receive the buffer with that offset. An NF4 tensor carries a second
 * buffer with its float block scales.
 */
final class OpenClTensor implements Tensor {
    private final OpenClBackend backend;
    private final DType dtype;
    private final Shape shape;
    private final cl_mem buffer;
    private final cl_mem scales; // NF4 block scales, else null
    private final long offset;   // in elements
    private final long deviceBytes; // bytes of device memory an owning tensor holds (buffers rounded up), 0 for views
    private final OpenClTensor root; // null for an owning tensor
    private volatile boolean closed;

    OpenClTensor(OpenClBackend backend, DType dtype, Shape shape, cl_mem buffer, cl_mem scales, long offset,
                 long deviceBytes, OpenClTensor root) {
        this.backend = backend;
        this.dtype = dtype;
        this.shape = shape;
        this.buffer = buffer;
        this.scales = scales;
        this.offset = offset;
        this.deviceBytes = deviceBytes;
        this.root = root;
    }

    @Override
    public Backend backend() {
        return backend;
    }

    OpenClBackend owner() {
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

    /** The buffer, after checking the tensor is alive. */
    cl_mem buffer() {
        if (isClosed()) throw new IllegalStateException("tensor " + shape + " " + dtype + " is closed");
        return buffer;
    }

    /** The NF4 block scales (null for other types), after checking the tensor is alive. */
    cl_mem scales() {
        buffer();
        return scales;
    }

    /** Element offset of this tensor in its buffer. */
    long offset() {
        return offset;
    }

    /** Byte offset of this tensor in its buffer (not defined for NF4, whose views all start at 0). */
    long byteOffset() {
        return dtype == DType.NF4 ? 0 : offset * (dtype.bits() / 8);
    }

    long deviceBytes() {
        return deviceBytes;
    }

    @Override
    public Tensor view(Shape newShape) {
        if (newShape.numel() != shape.numel())
            throw new IllegalArgumentException("cannot view " + shape + " as " + newShape);
        return new OpenClTensor(backend, dtype, newShape, buffer(), scales, offset, 0, rootOrSelf());
    }

    @Override
    public Tensor rows(int start, int count) {
        if (shape.rank() == 0) throw new IllegalArgumentException("a scalar has no rows");
        if (start < 0 || count < 0 || start + count > shape.dim(0))
            throw new IndexOutOfBoundsException("rows [" + start + ", " + (start + count) + ") of " + shape);
        if (dtype == DType.NF4) throw new IllegalArgumentException("row views of packed NF4 tensors are not supported");
        long perRow = shape.numel() / Math.max(1, shape.dim(0));
        return new OpenClTensor(backend, dtype, shape.withFirst(count), buffer(), null, offset + start * perRow, 0, rootOrSelf());
    }

    private OpenClTensor rootOrSelf() {
        return root == null ? this : root;
    }

    /** The raw buffers for the backend's release (no liveness check). */
    cl_mem rawBuffer() {
        return buffer;
    }

    cl_mem rawScales() {
        return scales;
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
        return "OpenClTensor" + shape + " " + dtype + (isClosed() ? " (closed)" : "");
    }
}
