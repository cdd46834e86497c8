package dev.jsloth.cuda;

/**
 * Splits a GEMM along the stored rows of one operand, so that an operand that must be converted (an NF4 weight
 * dequantized, a BF16 weight widened) only ever exists as one tile of {@code rowsPerTile} converted rows. Stored
 * rows of A are C's rows (or, transposed, the inner dimension k); stored rows of B are k (or, transposed, C's
 * columns). A tile along k adds into C, so every tile after the first uses beta = 1.
 */
final class GemmTiling {
    private GemmTiling() {
    }

    /** One tile's product: {@code accumulates} when it splits k (beta applies to the first tile only). */
    record Tile(MatrixRef a, MatrixRef b, MatrixRef c, boolean accumulates) {
    }

    /** The tile for stored rows {@code [r0, r0+count)} of A, whose converted rows are {@code converted}. */
    static Tile ofA(MatrixRef a, MatrixRef b, MatrixRef c, long r0, long count, MatrixRef converted) {
        if (!a.trans()) return new Tile(converted, b, c.rowSlice(r0, count), false);
        MatrixRef bk = b.trans() ? b.columnSlice(r0, count) : b.rowSlice(r0, count);
        return new Tile(converted, bk, c, true);
    }

    /** The tile for stored rows {@code [r0, r0+count)} of B, whose converted rows are {@code converted}. */
    static Tile ofB(MatrixRef a, MatrixRef b, MatrixRef c, long r0, long count, MatrixRef converted) {
        if (b.trans()) return new Tile(a, converted, c.columnSlice(r0, count), false);
        MatrixRef ak = a.trans() ? a.rowSlice(r0, count) : a.columnSlice(r0, count);
        return new Tile(ak, converted, c, true);
    }
}
