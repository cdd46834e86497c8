package dev.jsloth.cuda;

import dev.jsloth.api.DType;
import dev.jsloth.api.Tensor;

import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Operands that one kernel template parameter covers, so they must share an element type. When the tensors
 * already do (the usual case), they are used in place. When they differ, the group computes in a common type
 * (F64 if any member is F64, else F32, so nothing is computed in less than F32): inputs are converted into scratch
 * tensors, outputs are written to scratch and converted back, rounding once, when the group closes. The kernel is
 * queued between, so the conversions run in stream order around it.
 */
final class TypeGroup implements AutoCloseable {
    private final CudaBackend be;
    private final ElementType type;
    private final Map<Tensor, CudaTensor> copies = new IdentityHashMap<>();
    private final Set<Tensor> filled = Collections.newSetFromMap(new IdentityHashMap<>());
    private final List<Tensor> writeBack = new ArrayList<>();

    private TypeGroup(CudaBackend be, ElementType type) {
        this.be = be;
        this.type = type;
    }

    /** The group of the non-null {@code members} (floating tensors of {@code be}). */
    static TypeGroup of(CudaBackend be, Tensor... members) {
        DType first = null;
        boolean uniform = true, anyF64 = false;
        for (Tensor t : members) {
            if (t == null) continue;
            if (first == null) first = t.dtype();
            else if (t.dtype() != first) uniform = false;
            anyF64 |= t.dtype() == DType.F64;
        }
        if (first == null) throw new IllegalArgumentException("a type group needs a tensor");
        ElementType type = uniform ? ElementType.of(first) : anyF64 ? ElementType.F64 : ElementType.F32;
        return new TypeGroup(be, type);
    }

    /** The element type the kernel is instantiated with. */
    ElementType type() {
        return type;
    }

    /** The address of {@code t}'s values in the group type, for reading; 0 for null. */
    long in(Tensor t) {
        if (t == null) return 0;
        CudaTensor c = be.tensor(t);
        if (ElementType.of(c.dtype()) == type) return c.address();
        CudaTensor copy = copies.computeIfAbsent(t, k -> be.allocateUninitialized(type.dtype, c.shape()));
        if (filled.add(t)) Conversions.read(be, c, 0, c.numel(), copy.address(), type);
        return copy.address();
    }

    /** The address the kernel writes {@code t}'s new values to (converted back into t on close); 0 for null. */
    long out(Tensor t) {
        if (t == null) return 0;
        CudaTensor c = be.tensor(t);
        if (ElementType.of(c.dtype()) == type) return c.address();
        CudaTensor copy = copies.computeIfAbsent(t, k -> be.allocateUninitialized(type.dtype, c.shape()));
        if (writeBack.stream().noneMatch(w -> w == t)) writeBack.add(t);
        return copy.address();
    }

    /** The address of {@code t}'s values for reading and updating in place (converted back on close); 0 for null. */
    long inOut(Tensor t) {
        if (t == null) return 0;
        in(t);
        return out(t);
    }

    @Override
    public void close() {
        try {
            for (Tensor t : writeBack) {
                CudaTensor dst = be.tensor(t);
                Conversions.convert(be, copies.get(t).address(), type, dst.address(), ElementType.of(dst.dtype()), dst.numel());
            }
        } finally {
            for (CudaTensor c : copies.values()) c.close();
        }
    }
}
