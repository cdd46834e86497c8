package dev.jsloth.cuda;

import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Deterministic reductions: column sums and sums of squares in double, in an order fixed by the sizes alone
 * (partial sums per chunk of rows or per block, then the partials in order), never with atomics.
 */
final class Reductions {
    private static final int MAX_CHUNKS = 256;
    private static final int MIN_ROWS_PER_CHUNK = 32;
    private static final int SQUARE_BLOCKS = 1024;

    private Reductions() {
    }

    /** How {@code rows} are cut into chunks, each reduced by its own blocks. */
    record Chunking(long rowsPerChunk, int chunks) {
        static Chunking of(long rows) {
            long chunks = Math.max(1, Math.min(MAX_CHUNKS, Math.ceilDiv(rows, MIN_ROWS_PER_CHUNK)));
            long per = Math.max(1, Math.ceilDiv(rows, chunks));
            return new Chunking(per, (int) Math.max(1, Math.ceilDiv(rows, per)));
        }

        Grid grid(long cols) {
            return new Grid(Math.toIntExact(Math.ceilDiv(cols, 32)), chunks, 1, 32, 8, 1, 0);
        }
    }

    /** {@code out[j] = sum_i x[i,j]} (+= when accumulate); x and out may have different types. */
    static void sumRows(CudaBackend be, CudaTensor x, CudaTensor out, long rows, long cols, boolean accumulate) {
        if (cols == 0) return;
        Chunking ch = Chunking.of(rows);
        try (CudaTensor partial = be.allocateUninitialized(DType.F64, Shape.of(ch.chunks(), Math.toIntExact(cols)))) {
            be.kernel(KernelId.COLUMN_PARTIAL_SUMS, ElementType.of(x.dtype())).launch(ch.grid(cols),
                    LaunchArgs.of().ptr(x.address()).i64(rows).i64(cols).i64(ch.rowsPerChunk()).ptr(partial.address()));
            reducePartials(be, partial, ch.chunks(), cols, out.address(), ElementType.of(out.dtype()), accumulate);
        }
    }

    /** {@code out[j] = sum_c partial[c, j]} (+ out[j] when accumulate), partial being double {@code [chunks, cols]}. */
    static void reducePartials(CudaBackend be, CudaTensor partial, int chunks, long cols, long out, ElementType outType,
                               boolean accumulate) {
        be.kernel(KernelId.REDUCE_PARTIALS, outType).launch(Grid.linear(cols),
                LaunchArgs.of().ptr(partial.address()).i64(chunks).i64(cols).ptr(out).i32(accumulate ? 1 : 0));
    }

    /** {@code sum x^2} in double (NaN or infinite when any element is); waits for the result. */
    static double sumOfSquares(CudaBackend be, CudaTensor x) {
        long n = x.numel();
        if (n == 0) return 0;
        int blocks = (int) Math.max(1, Math.min(SQUARE_BLOCKS, Math.ceilDiv(n, Grid.THREADS * 8L)));
        try (CudaTensor partial = be.allocateUninitialized(DType.F64, Shape.of(blocks));
             CudaTensor total = be.allocateUninitialized(DType.F64, Shape.of(1))) {
            be.kernel(KernelId.SQUARE_PARTIAL_SUMS, ElementType.of(x.dtype())).launch(Grid.blocks(blocks, Grid.THREADS),
                    LaunchArgs.of().ptr(x.address()).i64(n).ptr(partial.address()));
            reducePartials(be, partial, blocks, 1, total.address(), ElementType.F64, false);
            try (Arena a = Arena.ofConfined()) {
                MemorySegment host = a.allocate(8, 8);
                be.toHost(host, total.address(), 8);
                return host.get(ValueLayout.JAVA_DOUBLE, 0);
            }
        }
    }
}
