package dev.jsloth.cpu;

import java.lang.foreign.MemorySegment;

/**
 * A GEMM operand: a stored row-major {@code rows x cols} matrix and whether the product uses its transpose.
 * {@code op(M)} has {@link #opRows()} x {@link #opCols()} elements; element (i, p) of op(M) is read by
 * {@link #at}.
 */
record Matrix(MemorySegment seg, Codec codec, long base, int rows, int cols, boolean trans) {
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
