package dev.jsloth.cpu;

import java.lang.foreign.MemorySegment;

/**
 * A GEMM operand: a stored row-major {@code rows x cols} matrix and whether the product uses its transpose.
 * {@code op(M)} has {@link #opRows()} x {@link #opCols()} elements; element (i, p) of op(M) is read by
 * {@link #at}. {@code panels}: where a frozen tensor's packed B panels are kept (null: packed per product).
 */
record Matrix(MemorySegment seg, Codec codec, long base, int rows, int cols, boolean trans, PanelCache panels) {
    /** An operand without kept panels. */
    Matrix(MemorySegment seg, Codec codec, long base, int rows, int cols, boolean trans) {
        this(seg, codec, base, rows, cols, trans, null);
    }

    int opRows() {
        return trans ? cols : rows;
    }

    int opCols() {
        return trans ? rows : cols;
    }

    /** Element index (in the segment) of op(M)[i][p]. */
    long at(int i, int p) {
        return base + (trans ? (long) p * cols + i : (long) i * cols + p);
    }
}
