package dev.jsloth.cuda;

import dev.jsloth.api.AttentionDims;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;

/**
 * The tensor-core attention of {@code flash_attention.cu}: used for BF16/F16 query, key, value, output (and their
 * gradients) with an F32 log-sum-exp, head dimension 64 or 128, rows aligned to 16 bytes, on compute capability
 * 8.0 or newer. {@link AttentionOp} takes every other case with its generic kernels. Shared memory layouts match
 * the kernels': 16-bit tiles of rows padded to {@code D + 8} (the streamed ones double-buffered, filled by cp.async
 * while the previous tile is multiplied), then per-row statistics and segment ids.
 */
final class FlashAttention {
    static final int THREADS = 128;
    /** Keys per block of dK/dV and per tile of the forward. */
    static final int KEY_ROWS = 64;

    /** Rows of the streamed tiles of the backward kernels (64 measured slower: 2.89 vs 2.46 ms at D = 64). */
    static final int BACKWARD_ROWS = 32;

    private FlashAttention() {
    }

    /**
     * How the forward and dQ kernels split a block's queries among its 4 warps: one m16 tile of rows per warp (64 rows
     * per block) or two (128). Two tiles let each K and V fragment read from shared memory feed two products and each
     * key tile copied serve twice the queries; the warps then reload their Q (and dO) fragments from shared memory per
     * key tile instead of holding them. Measured on an H200 at D = 128 (causal, batch 4 x 2048, 32 heads): forward
     * 0.936 -> 0.748 ms, dQ 1.546 -> 0.873 ms, bit-identical. At D = 64 two tiles took 183 registers (2 blocks per SM
     * against 4) and were no faster, so D = 64 has only the one-tile kernels.
     */
    enum QueryTiles {
        ONE, TWO;

        int rowsPerBlock() {
            return this == ONE ? 64 : 128;
        }
    }

    /**
     * Two tiles at D = 128 where their shared memory fits (105 KB per block: H100/H200 and A100 have 227/163 KB, the
     * 8.6/8.9 GPUs 99 KB), else one.
     */
    static QueryTiles queryTiles(CudaDevice device, int headDim) {
        boolean two = headDim == 128
                && Math.max(forwardSharedBytes(headDim, QueryTiles.TWO), dqSharedBytes(headDim, QueryTiles.TWO)) <= device.maxSharedOptIn;
        return two ? QueryTiles.TWO : QueryTiles.ONE;
    }

    /** Whether these tensors can take the tensor-core path. */
    static boolean applies(CudaBackend be, AttentionDims dims, Tensor lse, Tensor... tensors) {
        if (dims.headDim() != 64 && dims.headDim() != 128) return false;
        if (be.device.ccMajor < 8 || lse.dtype() != DType.F32) return false;
        int d = dims.headDim();
        int shared = Math.max(forwardSharedBytes(d, QueryTiles.ONE), Math.max(dkdvSharedBytes(d), dqSharedBytes(d, QueryTiles.ONE)));
        if (shared > be.device.maxSharedOptIn) return false;
        DType t = tensors[0].dtype();
        if (t != DType.BF16 && t != DType.F16) return false;
        for (Tensor x : tensors) if (x.dtype() != t || be.ptr(x) % 16 != 0) return false;
        return true;
    }

    private static int tileBytes(int rows, int headDim) {
        return rows * (headDim + 8) * 2;
    }

    /** The query tile, two buffers of key and value tiles, then the queries' and both buffers' segment ids. */
    static int forwardSharedBytes(int headDim, QueryTiles tiles) {
        int rows = tiles.rowsPerBlock();
        return tileBytes(rows + 4 * KEY_ROWS, headDim) + (rows + 2 * KEY_ROWS) * Integer.BYTES;
    }

    /** K and V tiles, two buffers of Q and dO tiles, two of lse and delta, two of query segment ids, the keys' ids. */
    static int dkdvSharedBytes(int headDim) {
        return tileBytes(2 * KEY_ROWS + 4 * BACKWARD_ROWS, headDim) + 4 * BACKWARD_ROWS * Float.BYTES
                + (2 * BACKWARD_ROWS + KEY_ROWS) * Integer.BYTES;
    }

    /** Q and dO tiles, two buffers of K and V tiles, the queries' segment ids and two buffers of the keys'. */
    static int dqSharedBytes(int headDim, QueryTiles tiles) {
        int rows = tiles.rowsPerBlock();
        return tileBytes(2 * rows + 4 * BACKWARD_ROWS, headDim) + (rows + 2 * BACKWARD_ROWS) * Integer.BYTES;
    }

    private static KernelId forwardKernel(int headDim, QueryTiles tiles) {
        if (headDim == 64) return KernelId.FLASH_FORWARD_D64;
        return tiles == QueryTiles.TWO ? KernelId.FLASH_FORWARD_D128_MT2 : KernelId.FLASH_FORWARD_D128;
    }

    private static KernelId dkdvKernel(int headDim) {
        return headDim == 64 ? KernelId.FLASH_DKDV_D64 : KernelId.FLASH_DKDV_D128;
    }

    private static KernelId dqKernel(int headDim, QueryTiles tiles) {
        if (headDim == 64) return KernelId.FLASH_DQ_D64;
        return tiles == QueryTiles.TWO ? KernelId.FLASH_DQ_D128_MT2 : KernelId.FLASH_DQ_D128;
    }

    static void forward(CudaBackend be, AttentionDims d, Tensor q, Tensor k, Tensor v, Tensor segments, double scale, Tensor out,
                        Tensor lse) {
        forward(be, d, q, k, v, segments, scale, out, lse, queryTiles(be.device, d.headDim()));
    }

    /** {@link #forward} with the query tiling given (tests compare both). */
    static void forward(CudaBackend be, AttentionDims d, Tensor q, Tensor k, Tensor v, Tensor segments, double scale, Tensor out,
                        Tensor lse, QueryTiles tiles) {
        ElementType t = ElementType.of(q.dtype());
        Grid grid = new Grid(Math.ceilDiv(d.seq(), tiles.rowsPerBlock()), d.qHeads(), d.batch(), THREADS, 1, 1,
                forwardSharedBytes(d.headDim(), tiles));
        be.kernel(forwardKernel(d.headDim(), tiles), t).launch(grid, LaunchArgs.of().ptr(be.ptr(q)).ptr(be.ptr(k)).ptr(be.ptr(v))
                .ptr(segments == null ? 0 : be.ptr(segments)).f32((float) scale).ptr(be.ptr(out)).ptr(be.ptr(lse))
                .i32(d.seq()).i32(d.kvSeq()).i32(d.qHeads()).i32(d.kvHeads()));
    }

    static void backward(CudaBackend be, AttentionDims d, Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor segments, double scale,
                         Tensor out, Tensor lse, Tensor dq, Tensor dk, Tensor dv) {
        backward(be, d, dOut, q, k, v, segments, scale, out, lse, dq, dk, dv, queryTiles(be.device, d.headDim()));
    }

    /** {@link #backward} with the dQ kernel's query tiling given (tests compare both). */
    static void backward(CudaBackend be, AttentionDims d, Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor segments, double scale,
                         Tensor out, Tensor lse, Tensor dq, Tensor dk, Tensor dv, QueryTiles tiles) {
        ElementType t = ElementType.of(q.dtype());
        long seg = segments == null ? 0 : be.ptr(segments);
        long rows = (long) d.batch() * d.seq() * d.qHeads();
        try (CudaTensor delta = be.allocateUninitialized(DType.F32, Shape.of(Math.toIntExact(rows)))) {
            be.kernel(KernelId.ATTENTION_DELTA, t).launch(Grid.blocks(Math.ceilDiv(rows, Grid.THREADS / 32), Grid.THREADS),
                    LaunchArgs.of().ptr(be.ptr(dOut)).ptr(be.ptr(out)).ptr(delta.address()).i32(d.batch()).i32(d.seq())
                            .i32(d.qHeads()).i32(d.headDim()));
            // one block per (key tile, query head); with GQA the per-query-head dK/dV go to fp32 partials, summed per group
            int group = d.qHeads() / d.kvHeads();
            long partElements = group == 1 ? 1 : (long) d.batch() * d.seq() * d.qHeads() * d.headDim();
            try (CudaTensor dkPart = group == 1 ? null : be.allocateUninitialized(DType.F32, Shape.of(Math.toIntExact(partElements)));
                 CudaTensor dvPart = group == 1 ? null : be.allocateUninitialized(DType.F32, Shape.of(Math.toIntExact(partElements)))) {
                Grid kv = new Grid(Math.ceilDiv(d.seq(), KEY_ROWS), d.qHeads(), d.batch(), THREADS, 1, 1, dkdvSharedBytes(d.headDim()));
                be.kernel(dkdvKernel(d.headDim()), t).launch(kv, LaunchArgs.of().ptr(be.ptr(dOut)).ptr(be.ptr(q)).ptr(be.ptr(k))
                        .ptr(be.ptr(v)).ptr(seg).f32((float) scale).ptr(be.ptr(lse)).ptr(delta.address()).ptr(be.ptr(dk)).ptr(be.ptr(dv))
                        .ptr(dkPart == null ? 0 : dkPart.address()).ptr(dvPart == null ? 0 : dvPart.address())
                        .i32(d.seq()).i32(d.qHeads()).i32(d.kvHeads()));
                if (group > 1) {
                    long kvRows = (long) d.batch() * d.seq() * d.kvHeads();
                    for (CudaTensor[] pair : new CudaTensor[][]{{dkPart, be.tensor(dk)}, {dvPart, be.tensor(dv)}})
                        be.kernel(KernelId.FLASH_GROUP_SUM, t).launch(Grid.linear(kvRows * d.headDim()), LaunchArgs.of()
                                .ptr(pair[0].address()).ptr(pair[1].address()).i64(kvRows).i32(group).i32(d.headDim()));
                }
            }
            Grid qg = new Grid(Math.ceilDiv(d.seq(), tiles.rowsPerBlock()), d.qHeads(), d.batch(), THREADS, 1, 1,
                    dqSharedBytes(d.headDim(), tiles));
            be.kernel(dqKernel(d.headDim(), tiles), t).launch(qg, LaunchArgs.of().ptr(be.ptr(dOut)).ptr(be.ptr(q)).ptr(be.ptr(k))
                    .ptr(be.ptr(v)).ptr(seg).f32((float) scale).ptr(be.ptr(lse)).ptr(delta.address()).ptr(be.ptr(dq))
                    .i32(d.seq()).i32(d.qHeads()).i32(d.kvHeads()));
        }
    }
}
