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
     * Which kernels run the products. MMA_ONE_TILE and MMA_TWO_TILES issue warp-level mma.sync and split a block's queries
     * (forward, dQ) among its 4 warps as one m16 tile of rows per warp (64 rows per block) or two (128): two tiles let each
     * K and V fragment read from shared memory feed two products and each key tile copied serve twice the queries; the
     * warps then reload their Q (and dO) fragments from shared memory per key tile instead of holding them. Measured on
     * an H200 at D = 128 (causal, batch 4 x 2048, 32 heads): forward 0.936 -> 0.748 ms, dQ 1.546 -> 0.873 ms,
     * bit-identical. At D = 64 two tiles took 183 registers (2 blocks per SM against 4) and were no faster, so D = 64 has
     * only the one-tile kernels. WGMMA (compute capability 9.0) issues the same products as warpgroup wgmma
     * instructions reading Q, K, V, dO straight from swizzled shared tiles; the forward runs two warpgroups (128 queries)
     * per block. Same bits as the mma.sync kernels; measured on an H200 (batch 2 x 2048, 32 query / 8 kv heads): forward
     * 0.413 -> 0.245 ms, dK/dV 0.699 -> 0.312 ms (one block per kv head's whole group), dQ 0.479 -> 0.269 ms (281, 440
     * and 383 TFLOP/s counting causal work); at D = 64 (batch 4 x 2048, 32 / 4 heads) forward 0.447 -> 0.303, dK/dV
     * 0.950 -> 0.456, dQ 0.503 -> 0.275.
     */
    enum Kernels {
        MMA_ONE_TILE, MMA_TWO_TILES, WGMMA;

        /** Query rows per block of the forward kernel. */
        int forwardRows() {
            return this == MMA_ONE_TILE ? 64 : 128;
        }

        /** Query rows per block of the dQ kernel. */
        int dqRows() {
            return this == MMA_TWO_TILES ? 128 : 64;
        }
    }

    /**
     * WGMMA on compute capability 9.0 (unless {@code -Djsloth.cuda.wgmma=false}); else two mma tiles at D = 128
     * where their shared memory fits (105 KB per block: H100/H200 and A100 have 227/163 KB, the 8.6/8.9 GPUs 99 KB); else one.
     */
    static Kernels kernels(CudaDevice device, int headDim) {
        if (runs(device, headDim, Kernels.WGMMA) && Boolean.parseBoolean(System.getProperty("jsloth.cuda.wgmma", "true")))
            return Kernels.WGMMA;
        return runs(device, headDim, Kernels.MMA_TWO_TILES) ? Kernels.MMA_TWO_TILES : Kernels.MMA_ONE_TILE;
    }

    /**
     * Whether this GPU can run these kernels at this head dimension: wgmma needs compute capability 9.0, the two-tile
     * mma kernels exist at D = 128 only, and every block's shared memory must fit.
     */
    static boolean runs(CudaDevice device, int headDim, Kernels kernels) {
        if (kernels == Kernels.WGMMA && !(device.ccMajor == 9 && device.ccMinor == 0)) return false;
        if (kernels == Kernels.MMA_TWO_TILES && headDim != 128) return false;
        return Math.max(forwardSharedBytes(headDim, kernels), Math.max(dkdvSharedBytes(headDim, kernels),
                dqSharedBytes(headDim, kernels))) <= device.maxSharedOptIn;
    }

    /** Whether these tensors can take the tensor-core path. */
    static boolean applies(CudaBackend be, AttentionDims dims, Tensor lse, Tensor... tensors) {
        if (dims.headDim() != 64 && dims.headDim() != 128) return false;
        // grid y and z stop at 65535: batch rows (y) and query or key tiles of at least 64 rows (z, up to 4,194,240 tokens)
        if (dims.batch() > 65535 || Math.ceilDiv(dims.seq(), KEY_ROWS) > 65535) return false;
        if (be.device.ccMajor < 8 || lse.dtype() != DType.F32) return false;
        if (!runs(be.device, dims.headDim(), Kernels.MMA_ONE_TILE)) return false;
        DType t = tensors[0].dtype();
        if (t != DType.BF16 && t != DType.F16) return false;
        for (Tensor x : tensors) if (x.dtype() != t || be.ptr(x) % 16 != 0) return false;
        return true;
    }

    private static int tileBytes(int rows, int headDim) {
        return rows * (headDim + 8) * 2;
    }

    /**
     * The wgmma kernels' shared memory: swizzled tiles of 64 rows of {@code headDim} 16-bit values, 1 KB to align them
     * to 1024 bytes, then the per-row vectors.
     */
    private static int wgmmaBytes(int tiles64, int headDim, int vectorBytes) {
        return tiles64 * 64 * headDim * 2 + 1024 + vectorBytes;
    }

    /** The query tile, two buffers of key and value tiles, then the queries' and both buffers' segment ids. */
    static int forwardSharedBytes(int headDim, Kernels kernels) {
        int rows = kernels.forwardRows();
        if (kernels == Kernels.WGMMA) return wgmmaBytes(rows / 64 + 4, headDim, (rows + 2 * KEY_ROWS) * Integer.BYTES);
        return tileBytes(rows + 4 * KEY_ROWS, headDim) + (rows + 2 * KEY_ROWS) * Integer.BYTES;
    }

    /**
     * K and V tiles, two buffers of Q and dO tiles, two of lse and delta, two of query segment ids, the keys' ids (the
     * wgmma kernel's query tiles have 64 rows, the mma kernel's 32).
     */
    static int dkdvSharedBytes(int headDim, Kernels kernels) {
        if (kernels == Kernels.WGMMA) return wgmmaBytes(6, headDim, 4 * 64 * Float.BYTES + (2 * 64 + KEY_ROWS) * Integer.BYTES);
        return tileBytes(2 * KEY_ROWS + 4 * BACKWARD_ROWS, headDim) + 4 * BACKWARD_ROWS * Float.BYTES
                + (2 * BACKWARD_ROWS + KEY_ROWS) * Integer.BYTES;
    }

    /** Q and dO tiles, two buffers of K and V tiles, the queries' segment ids and two buffers of the keys'. */
    static int dqSharedBytes(int headDim, Kernels kernels) {
        int rows = kernels.dqRows();
        if (kernels == Kernels.WGMMA) return wgmmaBytes(6, headDim, (rows + 2 * 64) * Integer.BYTES);
        return tileBytes(2 * rows + 4 * BACKWARD_ROWS, headDim) + (rows + 2 * BACKWARD_ROWS) * Integer.BYTES;
    }

    private static KernelId forwardKernel(int headDim, Kernels kernels) {
        if (headDim == 64) {
            if (kernels == Kernels.MMA_TWO_TILES) throw new IllegalArgumentException("no two-tile kernels at D = 64");
            return kernels == Kernels.WGMMA ? KernelId.FLASH_FORWARD_D64_WGMMA : KernelId.FLASH_FORWARD_D64;
        }
        return switch (kernels) {
            case MMA_ONE_TILE -> KernelId.FLASH_FORWARD_D128;
            case MMA_TWO_TILES -> KernelId.FLASH_FORWARD_D128_MT2;
            case WGMMA -> KernelId.FLASH_FORWARD_D128_WGMMA;
        };
    }

    private static KernelId dkdvKernel(int headDim, Kernels kernels) {
        if (headDim == 64) return kernels == Kernels.WGMMA ? KernelId.FLASH_DKDV_D64_WGMMA : KernelId.FLASH_DKDV_D64;
        return kernels == Kernels.WGMMA ? KernelId.FLASH_DKDV_D128_WGMMA : KernelId.FLASH_DKDV_D128;
    }

    private static KernelId dqKernel(int headDim, Kernels kernels) {
        if (headDim == 64) {
            if (kernels == Kernels.MMA_TWO_TILES) throw new IllegalArgumentException("no two-tile kernels at D = 64");
            return kernels == Kernels.WGMMA ? KernelId.FLASH_DQ_D64_WGMMA : KernelId.FLASH_DQ_D64;
        }
        return switch (kernels) {
            case MMA_ONE_TILE -> KernelId.FLASH_DQ_D128;
            case MMA_TWO_TILES -> KernelId.FLASH_DQ_D128_MT2;
            case WGMMA -> KernelId.FLASH_DQ_D128_WGMMA;
        };
    }

    static void forward(CudaBackend be, AttentionDims d, Tensor q, Tensor k, Tensor v, Tensor segments, double scale, Tensor out,
                        Tensor lse) {
        forward(be, d, q, k, v, segments, scale, out, lse, kernels(be.device, d.headDim()));
    }

    /** {@link #forward} with the kernels given (tests compare them). */
    static void forward(CudaBackend be, AttentionDims d, Tensor q, Tensor k, Tensor v, Tensor segments, double scale, Tensor out,
                        Tensor lse, Kernels kernels) {
        ElementType t = ElementType.of(q.dtype());
        int rows = kernels.forwardRows(), threads = kernels == Kernels.WGMMA ? 2 * THREADS : THREADS; // two warpgroups
        // (heads, batch, query tiles): the kernels take the tiles last to first, so the longest go out first (flash_query_block)
        Grid grid = new Grid(d.qHeads(), d.batch(), Math.ceilDiv(d.seq(), rows), threads, 1, 1, forwardSharedBytes(d.headDim(), kernels));
        be.kernel(forwardKernel(d.headDim(), kernels), t).launch(grid, LaunchArgs.of().ptr(be.ptr(q)).ptr(be.ptr(k)).ptr(be.ptr(v))
                .ptr(segments == null ? 0 : be.ptr(segments)).f32((float) scale).ptr(be.ptr(out)).ptr(be.ptr(lse))
                .i32(d.seq()).i32(d.kvSeq()).i32(d.qHeads()).i32(d.kvHeads()));
    }

    /** dK/dV blocks a backward should have at least: below, each kv head's group is split in chunks (tests lower it). */
    static volatile int minDkdvBlocks = 256;

    /**
     * In how many chunks the dK/dV kernel splits each kv head's group of query heads: the fewest (a divisor of the group)
     * that give at least {@link #minDkdvBlocks} blocks, or one per query head. A function of the shape alone (the minimum
     * is 256 outside tests), so a shape's dK and dV have the same bits on every GPU (the summation order follows the
     * chunks). One chunk writes dK and dV once (8B layer on the H200: 0.312 ms, against 0.386 + 0.047 per query head
     * with partials summed); a GPU that few blocks leave idle (a single kv head, batch 1 at 2,048 tokens: 32 blocks) is
     * better served by more, smaller ones.
     */
    static int dkdvChunks(AttentionDims d) {
        int group = d.qHeads() / d.kvHeads();
        long blocks = (long) d.kvHeads() * d.batch() * Math.ceilDiv(d.seq(), KEY_ROWS);
        for (int c = 1; c < group; c++) if (group % c == 0 && blocks * c >= minDkdvBlocks) return c;
        return group;
    }

    static void backward(CudaBackend be, AttentionDims d, Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor segments, double scale,
                         Tensor out, Tensor lse, Tensor dq, Tensor dk, Tensor dv) {
        backward(be, d, dOut, q, k, v, segments, scale, out, lse, dq, dk, dv, kernels(be.device, d.headDim()));
    }

    /** {@link #backward} with the kernels given (tests compare them). */
    static void backward(CudaBackend be, AttentionDims d, Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor segments, double scale,
                         Tensor out, Tensor lse, Tensor dq, Tensor dk, Tensor dv, Kernels kernels) {
        ElementType t = ElementType.of(q.dtype());
        long seg = segments == null ? 0 : be.ptr(segments);
        long rows = (long) d.batch() * d.seq() * d.qHeads();
        try (CudaTensor delta = be.allocateUninitialized(DType.F32, Shape.of(Math.toIntExact(rows)))) {
            AttentionOp.delta(be, t, d, be.ptr(dOut), be.ptr(out), delta.address());
            // one block per (kv head x chunk of its group's query heads, batch row, key tile), the first key tiles (the
            // most queries) launched first; with one chunk per group dK and dV are written once, else summed over chunks
            int chunks = dkdvChunks(d), kvHeadChunks = d.kvHeads() * chunks;
            long partElements = chunks == 1 ? 1 : (long) d.batch() * d.seq() * kvHeadChunks * d.headDim();
            try (CudaTensor dkPart = chunks == 1 ? null : be.allocateUninitialized(DType.F32, Shape.of(Math.toIntExact(partElements)));
                 CudaTensor dvPart = chunks == 1 ? null : be.allocateUninitialized(DType.F32, Shape.of(Math.toIntExact(partElements)))) {
                Grid kv = new Grid(kvHeadChunks, d.batch(), Math.ceilDiv(d.seq(), KEY_ROWS), THREADS, 1, 1, dkdvSharedBytes(d.headDim(), kernels));
                be.kernel(dkdvKernel(d.headDim(), kernels), t).launch(kv, LaunchArgs.of().ptr(be.ptr(dOut)).ptr(be.ptr(q)).ptr(be.ptr(k))
                        .ptr(be.ptr(v)).ptr(seg).f32((float) scale).ptr(be.ptr(lse)).ptr(delta.address()).ptr(be.ptr(dk)).ptr(be.ptr(dv))
                        .ptr(dkPart == null ? 0 : dkPart.address()).ptr(dvPart == null ? 0 : dvPart.address())
                        .i32(d.seq()).i32(d.qHeads()).i32(d.kvHeads()).i32(chunks));
                if (chunks > 1) {
                    long kvRows = (long) d.batch() * d.seq() * d.kvHeads();
                    for (CudaTensor[] pair : new CudaTensor[][]{{dkPart, be.tensor(dk)}, {dvPart, be.tensor(dv)}})
                        be.kernel(KernelId.FLASH_CHUNK_SUM, t).launch(Grid.linear(kvRows * d.headDim()), LaunchArgs.of()
                                .ptr(pair[0].address()).ptr(pair[1].address()).i64(kvRows).i32(chunks).i32(d.headDim()));
                }
            }
            Grid qg = new Grid(d.qHeads(), d.batch(), Math.ceilDiv(d.seq(), kernels.dqRows()), THREADS, 1, 1,
                    dqSharedBytes(d.headDim(), kernels));
            be.kernel(dqKernel(d.headDim(), kernels), t).launch(qg, LaunchArgs.of().ptr(be.ptr(dOut)).ptr(be.ptr(q)).ptr(be.ptr(k))
                    .ptr(be.ptr(v)).ptr(seg).f32((float) scale).ptr(be.ptr(lse)).ptr(delta.address()).ptr(be.ptr(dq))
                    .i32(d.seq()).i32(d.qHeads()).i32(d.kvHeads()));
        }
    }
}
