package dev.jsloth.api.autograd;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;

import java.util.ArrayList;
import java.util.List;

/**
 * Parameters of one type laid end to end in one value buffer and one gradient buffer, each parameter a view of
 * its range: the optimizer updates all of them in one kernel launch, gradients are cleared, measured, clipped and
 * all-reduced as one tensor. The buffer owns the memory; the parameters' tensors are views.
 */
public final class ParameterBuffer implements AutoCloseable {
    private final Tensor values;
    private final Tensor grads;
    private final List<Parameter> parameters;

    private ParameterBuffer(Tensor values, Tensor grads, List<Parameter> parameters) {
        this.values = values;
        this.grads = grads;
        this.parameters = parameters;
    }

    /**
     * Moves {@code params} (same backend and type) into a new buffer: returns it and its parameters, same names and
     * order, whose values are copies of the old ones. The old parameters are closed.
     */
    public static ParameterBuffer of(List<Parameter> params) {
        if (params.isEmpty()) throw new IllegalArgumentException("no parameters");
        Backend be = params.getFirst().value().backend();
        DType type = params.getFirst().value().dtype();
        long total = 0;
        for (Parameter p : params) {
            if (p.value().backend() != be || p.value().dtype() != type)
                throw new IllegalArgumentException("parameter " + p + " is not on the same backend and type as " + params.getFirst());
            total += p.value().numel();
        }
        Tensor values = be.allocate(type, Shape.of(Math.toIntExact(total)));
        Tensor grads = be.allocate(type, Shape.of(Math.toIntExact(total)));
        List<Parameter> out = new ArrayList<>();
        int at = 0;
        for (Parameter p : params) {
            int n = Math.toIntExact(p.value().numel());
            Tensor v = values.rows(at, n).view(p.value().shape());
            be.kernels().copy(p.value(), v);
            out.add(new Parameter(p.name(), v, grads.rows(at, n).view(p.value().shape())));
            at += n;
            p.close();
        }
        return new ParameterBuffer(values, grads, List.copyOf(out));
    }

    public List<Parameter> parameters() {
        return parameters;
    }

    /** All values, end to end. */
    public Tensor values() {
        return values;
    }

    /** All gradients, end to end. */
    public Tensor grads() {
        return grads;
    }

    /**
     * For one forward/backward pass in a narrower compute type (bf16 training with F32 parameters): converts all
     * values once (one launch) and hands every parameter a view of the copy ({@link Parameter#computeCopy}), instead
     * of each product converting its own A and B twice a step. Closing the result ends the pass: the copies go away,
     * so no later write to the values can leave a stale copy behind.
     */
    public ComputePass beginCompute(DType type) {
        if (type == values.dtype()) return () -> { };
        Backend be = values.backend();
        Tensor copy = be.allocateForOverwrite(type, values.shape());
        be.kernels().copy(values, copy);
        int at = 0;
        for (Parameter p : parameters) {
            int n = Math.toIntExact(p.value().numel());
            p.setComputeCopy(copy.rows(at, n).view(p.value().shape()));
            at += n;
        }
        return () -> {
            for (Parameter p : parameters) p.setComputeCopy(null);
            copy.close();
        };
    }

    /** The end of a pass begun by {@link #beginCompute}. */
    public interface ComputePass extends AutoCloseable {
        @Override
        void close();
    }

    public void zeroGrads() {
        values.backend().kernels().fill(grads, 0);
    }

    @Override
    public void close() {
        values.close();
        grads.close();
    }
}
