package dev.jsloth.api.spi;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;

/**
 * What every backend's tensor shares: type, shape, owning tensor or view, liveness (a view is alive while its root
 * is; closing a view does nothing; closing a root releases its memory once), and the argument checks of
 * {@link #view} and {@link #rows}. A backend supplies where the memory is: {@link #viewAs} and {@link #rowsFrom}
 * make the views, {@link #release} frees a root's memory.
 *
 * @param <T> the backend's tensor class
 */
public abstract class BackendTensor<T extends BackendTensor<T>> implements Tensor {
    private final DType dtype;
    private final Shape shape;
    private final T root; // null for an owning tensor
    private volatile boolean closed;

    protected BackendTensor(DType dtype, Shape shape, T root) {
        this.dtype = dtype;
        this.shape = shape;
        this.root = root;
    }

    @Override
    public final DType dtype() {
        return dtype;
    }

    @Override
    public final Shape shape() {
        return shape;
    }

    /** The owning tensor: this one, or a view's root. */
    @SuppressWarnings("unchecked")
    protected final T rootOrSelf() {
        return root == null ? (T) this : root;
    }

    /** Whether this tensor owns its memory (is not a view). */
    protected final boolean owns() {
        return root == null;
    }

    /** Throws unless the tensor (its root, for a view) is alive. */
    protected final void checkAlive() {
        if (isClosed()) throw new IllegalStateException("tensor " + shape + " " + dtype + " is closed");
    }

    @Override
    public final Tensor view(Shape newShape) {
        if (newShape.numel() != shape.numel())
            throw new IllegalArgumentException("cannot view " + shape + " as " + newShape);
        checkAlive();
        return viewAs(newShape);
    }

    @Override
    public final Tensor rows(int start, int count) {
        if (shape.rank() == 0) throw new IllegalArgumentException("a scalar has no rows");
        if (start < 0 || count < 0 || start + count > shape.dim(0))
            throw new IndexOutOfBoundsException("rows [" + start + ", " + (start + count) + ") of " + shape);
        if (dtype == DType.NF4) throw new IllegalArgumentException("row views of packed NF4 tensors are not supported");
        checkAlive();
        long perRow = shape.numel() / Math.max(1, shape.dim(0));
        return rowsFrom(shape.withFirst(count), start * perRow);
    }

    /** A view of the same memory with another shape of the same element count (checked; the tensor is alive). */
    protected abstract T viewAs(Shape newShape);

    /** A view of {@code shape} starting {@code elementOffset} elements into this tensor (checked; alive; not NF4). */
    protected abstract T rowsFrom(Shape shape, long elementOffset);

    /** Frees an owning tensor's memory; called once, by the first {@link #close()}. */
    protected abstract void release();

    @Override
    public final boolean isClosed() {
        return root == null ? closed : root.isClosed();
    }

    @Override
    public final void close() {
        if (root != null || closed) return;
        synchronized (this) {
            if (closed) return;
            closed = true;
        }
        release();
    }

    @Override
    public String toString() {
        return getClass().getSimpleName() + shape + " " + dtype + (isClosed() ? " (closed)" : "");
    }

    @Override
    public abstract Backend backend();
}
