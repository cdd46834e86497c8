package dev.jsloth.api;

/**
 * A dense, row-major, contiguous array of elements owned by one {@link Backend}.
 *
 * <p>Lifetime is explicit: {@link #close()} frees the memory of a tensor that owns it; views made with
 * {@link #view} or {@link #rows} share their parent's memory and must not outlive it. Using a closed
 * tensor is an error that kernels detect.
 */
public interface Tensor extends AutoCloseable {
    Backend backend();

    DType dtype();

    Shape shape();

    default long numel() {
        return shape().numel();
    }

    /** A tensor of another shape with the same element count over the same memory (not owned). */
    Tensor view(Shape shape);

    /** Rows {@code [start, start+count)} along the first dimension, as a view (not owned). */
    Tensor rows(int start, int count);

    boolean isClosed();

    @Override
    void close();

    default Tensor view(int... dims) {
        return view(Shape.of(dims));
    }
}
