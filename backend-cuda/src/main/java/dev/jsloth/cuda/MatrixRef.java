package dev.jsloth.cuda;

/**
 * A row-major matrix in device memory as a GEMM operand: the address of element (0, 0), its element type, the
 * stored {@code rows x cols} with leading dimension {@code ld} (elements between row starts), and whether the
 * product uses its transpose. Slices share the memory.
 */
record MatrixRef(long ptr, ElementType type, long rows, long cols, long ld, boolean trans) {
    static MatrixRef dense(long ptr, ElementType type, long rows, long cols, boolean trans) {
        return new MatrixRef(ptr, type, rows, cols, cols, trans);
    }

    long opRows() {
        return trans ? cols : rows;
    }

    long opCols() {
        return trans ? rows : cols;
    }

    /** Stored rows {@code [r0, r0+count)}. */
    MatrixRef rowSlice(long r0, long count) {
        return new MatrixRef(ptr + r0 * ld * type.bytes, type, count, cols, ld, trans);
    }

    /** Stored columns {@code [c0, c0+count)}. */
    MatrixRef columnSlice(long c0, long count) {
        return new MatrixRef(ptr + c0 * type.bytes, type, rows, count, ld, trans);
    }

    /** Elements from one matrix of a batch to the next when the batch is dense. */
    long stride() {
        return rows * ld;
    }
}
