package dev.jsloth.opencl;

import dev.jsloth.api.DType;
import dev.jsloth.api.Tensor;

/**
 * The compute type of a kernel launch: {@code real} in the OpenCL sources. A launch computes in double when any
 * of its floating operands is F64 (which also covers "in F64 when the output is F64"), else in float.
 */
enum Precision {
    FLOAT(4, "float"),
    DOUBLE(8, "double");

    private final int bytes;
    private final String label;

    Precision(int bytes, String label) {
        this.bytes = bytes;
        this.label = label;
    }

    /** Size of one {@code real} in bytes (local-memory sizing, scratch buffers). */
    int bytes() {
        return bytes;
    }

    /** The F32 or F64 dtype of scratch tensors holding {@code real}s. */
    DType scratchType() {
        return this == DOUBLE ? DType.F64 : DType.F32;
    }

    String label() {
        return label;
    }

    /** DOUBLE when any non-null operand is F64, else FLOAT. */
    static Precision of(Tensor... operands) {
        for (Tensor t : operands) if (t != null && t.dtype() == DType.F64) return DOUBLE;
        return FLOAT;
    }
}
