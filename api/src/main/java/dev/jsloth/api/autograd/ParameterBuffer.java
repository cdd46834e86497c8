package dev.jsloth.api.autograd;

import dev.jsloth.api.Allocations;
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
    private Tensor computeCopy; // all values in the compute type, during a pass (beginCompute)

    private ParameterBuffer(Tensor values, Tensor grads, List<Parameter> parameters) {
        this.values = values;
        this.grads = grads;
        this.parameters = parameters;
    }

    /**
     * Matrices of one width that lie end to end in this buffer, as one {@code [sum of rows, width]} matrix: LoRA's A
     * matrices of projections that read the same input (Q, K and V; gate and up), stacked so that one product forms
     * all their rank-r products. Views of the buffer's values, gradients and compute copy; no memory of their own.
     */
    public final class Stack {
        private final int offset, rows, cols;
        private final List<Parameter> members;

        private Stack(int offset, int rows, int cols, List<Parameter> members) {
            this.offset = offset;
            this.rows = rows;
            this.cols = cols;
            this.members = List.copyOf(members);
        }

        /** The stacked parameters, in order. */
        public List<Parameter> members() {
            return members;
        }

        public Tensor value() {
            return values.rows(offset, rows * cols).view(rows, cols);
        }

        public Tensor grad() {
            return grads.rows(offset, rows * cols).view(rows, cols);
        }

        /** The stacked values in {@code type} during a pass begun with that type (null otherwise). */
        public Tensor computeCopy(DType type) {
            Tensor c = computeCopy;
            return c != null && c.dtype() == type ? c.rows(offset, rows * cols).view(rows, cols) : null;
        }

        public int rows() {
            return rows;
        }
    }

    /**
     * {@code members} (each a rank-2 parameter of this buffer) as one {@link Stack}, or null unless they follow each
     * other in this order in the buffer with the same number of columns.
     */
    public Stack stack(List<Parameter> members) {
        if (members.isEmpty()) return null;
        int start = -1, next = -1, rows = 0, cols = -1;
        for (Parameter m : members) {
            int at = offset(m);
            Shape sh = m.value().shape();
            if (at < 0 || sh.rank() != 2 || (cols >= 0 && sh.dim(1) != cols) || (next >= 0 && at != next)) return null;
            if (start < 0) start = at;
            cols = sh.dim(1);
            rows += sh.dim(0);
            next = at + Math.toIntExact(m.value().numel());
        }
        return new Stack(start, rows, cols, members);
    }

    /** Where {@code p} starts in the buffer (elements), or -1 when it is not one of its parameters. */
    private int offset(Parameter p) {
        int at = 0;
        for (Parameter q : parameters) {
            if (q == p) return at;
            at += Math.toIntExact(q.value().numel());
        }
        return -1;
    }

    /**
     * Moves {@code params} (same backend and type) into a new buffer: returns it and its parameters, same names and
     * order, whose values are copies of the old ones. The old parameters are closed; if this fails, they are left open
     * (still the caller's) and nothing else stays allocated.
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
        try (Allocations made = new Allocations()) {
            Tensor values = made.add(be.allocate(type, Shape.of(Math.toIntExact(total))));
            Tensor grads = made.add(be.allocate(type, Shape.of(Math.toIntExact(total))));
            List<Parameter> out = new ArrayList<>();
            int at = 0;
            for (Parameter p : params) {
                int n = Math.toIntExact(p.value().numel());
                Tensor v = values.rows(at, n).view(p.value().shape());
                be.kernels().copy(p.value(), v);
                out.add(new Parameter(p.name(), v, grads.rows(at, n).view(p.value().shape())));
                at += n;
            }
            ParameterBuffer buffer = made.handOver(new ParameterBuffer(values, grads, List.copyOf(out)));
            for (Parameter p : params) p.close(); // only now: a failure above leaves every parameter the caller's
            return buffer;
        }
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
        try {
            be.kernels().copy(values, copy);
        } catch (RuntimeException | Error e) {
            copy.close();
            throw e;
        }
        computeCopy = copy;
        int at = 0;
        for (Parameter p : parameters) {
            int n = Math.toIntExact(p.value().numel());
            p.setComputeCopy(copy.rows(at, n).view(p.value().shape()));
            at += n;
        }
        return () -> {
            for (Parameter p : parameters) p.setComputeCopy(null);
            computeCopy = null;
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
