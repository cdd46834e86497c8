package dev.jsloth.cuda;

import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;

import java.util.Arrays;

/**
 * Embedding gather and its deterministic scatter-add (ids already validated on the host by {@link CudaKernels}).
 * The table and the activations have their own element types (a BF16 table with F32 activations works as stored).
 */
final class EmbeddingOp {
    private EmbeddingOp() {
    }

    /** Positions grouped by id: {@code uniqueIds[u]} occurs at {@code positions[starts[u] .. starts[u+1])}, in order. */
    record Grouping(int[] uniqueIds, int[] starts, int[] positions) {
        static Grouping of(int[] ids) {
            long[] keys = new long[ids.length];
            for (int i = 0; i < ids.length; i++) keys[i] = ((long) ids[i] << 32) | i;
            Arrays.sort(keys);
            int[] positions = new int[ids.length];
            int[] unique = new int[ids.length];
            int[] starts = new int[ids.length + 1];
            int u = 0;
            for (int i = 0; i < keys.length; i++) {
                int id = (int) (keys[i] >>> 32);
                positions[i] = (int) keys[i];
                if (i == 0 || id != unique[u - 1]) {
                    unique[u] = id;
                    starts[u] = i;
                    u++;
                }
            }
            starts[u] = ids.length;
            return new Grouping(Arrays.copyOf(unique, u), Arrays.copyOf(starts, u + 1), positions);
        }
    }

    static void forward(CudaBackend be, Tensor table, Tensor ids, Tensor out, long n, long dim) {
        if (n * dim == 0) return;
        be.kernel(KernelId.EMBEDDING_FORWARD, ElementType.of(table.dtype()), ElementType.of(out.dtype())).launch(Grid.linear(n * dim),
                LaunchArgs.of().ptr(be.ptr(table)).ptr(be.ptr(ids)).ptr(be.ptr(out)).i64(n).i64(dim));
    }

    static void backward(CudaBackend be, Tensor dOut, int[] ids, Tensor dTable, long dim) {
        if (ids.length == 0 || dim == 0) return;
        Grouping g = Grouping.of(ids);
        int threads = NormOps.rowThreads(dim);
        int columnBlocks = (int) Math.min(65535, Math.ceilDiv(dim, threads));
        try (Tensor unique = be.uploadInts(Shape.of(g.uniqueIds().length), g.uniqueIds());
             Tensor starts = be.uploadInts(Shape.of(g.starts().length), g.starts());
             Tensor positions = be.uploadInts(Shape.of(g.positions().length), g.positions())) {
            Grid grid = new Grid((int) Math.min(Grid.MAX_BLOCKS, g.uniqueIds().length), columnBlocks, 1, threads, 1, 1, 0);
            be.kernel(KernelId.EMBEDDING_BACKWARD, ElementType.of(dOut.dtype()), ElementType.of(dTable.dtype())).launch(grid,
                    LaunchArgs.of().ptr(be.ptr(dOut)).ptr(be.ptr(unique)).ptr(be.ptr(starts)).ptr(be.ptr(positions))
                            .ptr(be.ptr(dTable)).i64(g.uniqueIds().length).i64(dim));
        }
    }
}
