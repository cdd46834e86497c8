package dev.jsloth.cuda;

/**
 * The column-major problem cuBLAS solves for a row-major {@code C = op(A) op(B)}. A row-major matrix read
 * column-major is its transpose, so cuBLAS computes {@code C^T = op(B)^T op(A)^T}: its first operand is our B, its
 * second our A, and {@code m, n} are C's columns and rows.
 */
record ColumnMajorGemm(int transa, int transb, long m, long n, long k, Layout a, Layout b, Layout c) {
    /** A column-major layout: element type, rows, columns, leading dimension. */
    record Layout(ElementType type, long rows, long cols, long ld) {
    }

    static ColumnMajorGemm of(MatrixRef a, MatrixRef b, MatrixRef c) {
        return new ColumnMajorGemm(
                b.trans() ? CublasLt.OP_T : CublasLt.OP_N,
                a.trans() ? CublasLt.OP_T : CublasLt.OP_N,
                c.cols(), c.rows(), a.opCols(),
                new Layout(b.type(), b.cols(), b.rows(), b.ld()),
                new Layout(a.type(), a.cols(), a.rows(), a.ld()),
                new Layout(c.type(), c.cols(), c.rows(), c.ld()));
    }
}
