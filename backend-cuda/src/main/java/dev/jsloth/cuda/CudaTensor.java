package dev.jsloth.cuda;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.spi.BackendTensor;

/**
 * A tensor in device memory. An owning tensor holds a block of the backend's caching allocator (and, for NF4, a
 * second block with the block scales, {@link Nf4DeviceScales}); a view shares its root's memory and liveness.
 */
final class CudaTensor extends BackendTensor<CudaTensor> {
    private final CudaBackend backend;
    private final long address;
    private final DeviceAllocator.Block block;
    private final Nf4DeviceScales scales; // NF4 block scales, owned by the root

    CudaTensor(CudaBackend backend, DType dtype, Shape shape, DeviceAllocator.Block block, Nf4DeviceScales scales) {
        this(backend, dtype, shape, block.pointer(), null, block, scales);
    }

    private CudaTensor(CudaBackend backend, DType dtype, Shape shape, long address, CudaTensor root,
                       DeviceAllocator.Block block, Nf4DeviceScales scales) {
        super(dtype, shape, root);
        this.backend = backend;
        this.address = address;
        this.block = block;
        this.scales = scales;
    }

    @Override
    public Backend backend() {
        return backend;
    }

    /** The device address of element 0, after checking the tensor is alive. */
    long address() {
        checkAlive();
        return address;
    }

    /** An NF4 tensor's block scales (its root's), after checking the tensor is alive. */
    Nf4DeviceScales scales() {
        address();
        return rootOrSelf().scales;
    }

    /** Bytes of device memory this tensor accounts for in the memory statistics (0 for views). */
    long accountedBytes() {
        if (!owns()) return 0;
        long bytes = dtype().byteSize(shape().numel());
        if (scales != null) bytes += scales.bytes();
        return bytes;
    }

    DeviceAllocator.Block block() {
        return block;
    }

    /** The NF4 scales this tensor owns (null for views and other types). */
    Nf4DeviceScales nf4Scales() {
        return scales;
    }

    @Override
    protected CudaTensor viewAs(Shape newShape) {
        return new CudaTensor(backend, dtype(), newShape, address, rootOrSelf(), null, null);
    }

    @Override
    protected CudaTensor rowsFrom(Shape rows, long elementOffset) {
        return new CudaTensor(backend, dtype(), rows, address + elementOffset * (dtype().bits() / 8), rootOrSelf(), null, null);
    }

    @Override
    protected void release() {
        backend.release(this);
    }
}
