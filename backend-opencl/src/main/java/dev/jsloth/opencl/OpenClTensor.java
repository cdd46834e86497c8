package dev.jsloth.opencl;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.spi.BackendTensor;
import org.jocl.cl_mem;

/**
 * A tensor in an OpenCL buffer. A view ({@link #view}, {@link #rows}) shares its root's buffer at an element
 * offset and its root's liveness; kernels receive the buffer with that offset. An NF4 tensor carries a second
 * buffer with its float block scales.
 */
final class OpenClTensor extends BackendTensor<OpenClTensor> {
    private final OpenClBackend backend;
    private final cl_mem buffer;
    private final cl_mem scales; // NF4 block scales, else null
    private final long offset;   // in elements
    private final long deviceBytes; // bytes of device memory an owning tensor holds (buffers rounded up), 0 for views

    OpenClTensor(OpenClBackend backend, DType dtype, Shape shape, cl_mem buffer, cl_mem scales, long offset,
                 long deviceBytes, OpenClTensor root) {
        super(dtype, shape, root);
        this.backend = backend;
        this.buffer = buffer;
        this.scales = scales;
        this.offset = offset;
        this.deviceBytes = deviceBytes;
    }

    @Override
    public Backend backend() {
        return backend;
    }

    OpenClBackend owner() {
        return backend;
    }

    /** The buffer, after checking the tensor is alive. */
    cl_mem buffer() {
        checkAlive();
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
        return dtype() == DType.NF4 ? 0 : offset * (dtype().bits() / 8);
    }

    long deviceBytes() {
        return deviceBytes;
    }

    @Override
    protected OpenClTensor viewAs(Shape newShape) {
        return new OpenClTensor(backend, dtype(), newShape, buffer, scales, offset, 0, rootOrSelf());
    }

    @Override
    protected OpenClTensor rowsFrom(Shape rows, long elementOffset) {
        return new OpenClTensor(backend, dtype(), rows, buffer, null, offset + elementOffset, 0, rootOrSelf());
    }

    /** The raw buffers for the backend's release (no liveness check). */
    cl_mem rawBuffer() {
        return buffer;
    }

    cl_mem rawScales() {
        return scales;
    }

    @Override
    protected void release() {
        backend.release(this);
    }
}
