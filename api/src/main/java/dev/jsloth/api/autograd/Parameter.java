package dev.jsloth.api.autograd;

import dev.jsloth.api.DType;
import dev.jsloth.api.Tensor;

/**
 * A trainable tensor and its gradient. The gradient is allocated on first use with the value's type and shape,
 * and backward passes accumulate into it ({@code +=}); {@link #zeroGrad()} clears it between optimizer steps.
 */
public final class Parameter implements AutoCloseable {
    private final String name;
    private final Tensor value;
    private Tensor grad;
    private Tensor computeCopy; // the value in the compute type, during one pass (see ParameterBuffer#beginCompute)

    public Parameter(String name, Tensor value) {
        this.name = name;
        this.value = value;
    }

    /** A parameter whose gradient lives in {@code grad} (same shape and type; e.g. a view of a {@link ParameterBuffer}). */
    public Parameter(String name, Tensor value, Tensor grad) {
        if (!grad.shape().equals(value.shape()) || grad.dtype() != value.dtype())
            throw new IllegalArgumentException("gradient " + grad.shape() + " " + grad.dtype() + " does not fit " + value.shape() + " " + value.dtype());
        this.name = name;
        this.value = value;
        this.grad = grad;
    }

    public String name() {
        return name;
    }

    public Tensor value() {
        return value;
    }

    /** The gradient tensor, allocated (zero) on first call. */
    public Tensor grad() {
        if (grad == null) grad = value.backend().allocate(value.dtype(), value.shape());
        return grad;
    }

    /** The value converted to {@code type} for the current pass, if one was made; else null. */
    public Tensor computeCopy(DType type) {
        Tensor c = computeCopy;
        return c != null && c.dtype() == type ? c : null;
    }

    void setComputeCopy(Tensor copy) {
        this.computeCopy = copy;
    }

    public boolean hasGrad() {
        return grad != null;
    }

    public void zeroGrad() {
        if (grad != null) value.backend().kernels().fill(grad, 0);
    }

    @Override
    public void close() {
        value.close();
        if (grad != null) grad.close();
    }

    @Override
    public String toString() {
        return name + value.shape();
    }
}
