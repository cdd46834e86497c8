package dev.jsloth.cuda;

import dev.jsloth.api.AttentionDims;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;

/**
 * The tensor-core attention of {@code flash_attention.cu}: used for BF16/F16 query, key, value, output (and their
 * gradients) with an F32 log-sum-exp, head dimension 64 or 128, rows aligned to 16 bytes, on compute capability
 * 8.0 or newer. {@link AttentionOp} takes every other case with its generic kernels. Shared memory layouts match
 * the kernels': 16-bit tiles of rows padded to {@code D + 8}, then per-row statistics and segment ids.
 */
final class FlashAttention {
    static final int THREADS = 128;
    static final int QUERY_ROWS = 64, KEY_ROWS = 64, BACKWARD_QUERY_ROWS = 32, BACKWARD_KEY_ROWS = 32;

    private FlashAttention() {
    }

    /** Whether these tensors can take the tensor-core path. */
    static boolean applies(CudaBackend be, AttentionDims d, Tensor lse, Tensor... tensors) {
        if (d.headDim() != 64 && d.headDim() != 128) return false;
        if (be.device.ccMajor < 8 || lse.dtype() != DType.F32) return false;
        DType t = tensors[0].dtype();
        if (t != DType.BF16 && t != DType.F16) return false;
        for (Tensor x : tensors) if (x.dtype() != t || be.ptr(x) % 16 != 0) return false;
        return true;
    }

    private static int tileBytes(int rows, int headDim) {
        return rows * (headDim + 8) * 2;
    }

    static int forwardSharedBytes(int headDim) {
        return tileBytes(QUERY_ROWS + 2 * KEY_ROWS, headDim) + (QUERY_ROWS + KEY_ROWS) * Integer.BYTES;
    }

    static int dkdvSharedBytes(int headDim) {
        return tileBytes(2 * KEY_ROWS + 2 * BACKWARD_QUERY_ROWS, headDim) + 2 * BACKWARD_QUERY_ROWS * Float.BYTES
                + (BACKWARD_QUERY_ROWS + KEY_ROWS) * Integer.BYTES;
    }

    static int dqSharedBytes(int headDim) {
        return tileBytes(2 * QUERY_ROWS + 2 * BACKWARD_KEY_ROWS, headDim) + (QUERY_ROWS + BACKWARD_KEY_ROWS) * Integer.BYTES;
    }

    private static KernelId forwardKernel(int headDim) {
        return headDim == 64 ? KernelId.FLASH_FORWARD_D64 : KernelId.FLASH_FORWARD_D128;
    }

    private static KernelId dkdvKernel(int headDim) {
        return headDim == 64 ? KernelId.FLASH_DKDV_D64 : KernelId.FLASH_DKDV_D128;
    }

    private static KernelId dqKernel(int headDim) {
        return headDim == 64 ? KernelId.FLASH_DQ_D64 : KernelId.FLASH_DQ_D128;
    }

    static void forward(CudaBackend be, AttentionDims d, Tensor q, Tensor k, Tensor v, Tensor segments, double scale, Tensor out,
                        Tensor lse) {
        ElementType t = ElementType.of(q.dtype());
        Grid grid = new Grid(Math.ceilDiv(d.seq(), QUERY_ROWS), d.qHeads(), d.batch(), THREADS, 1, 1, forwardSharedBytes(d.headDim()));
        be.kernel(forwardKernel(d.headDim()), t).launch(grid, LaunchArgs.of().ptr(be.ptr(q)).ptr(be.ptr(k)).ptr(be.ptr(v))
                .ptr(segments == null ? 0 : be.ptr(segments)).f32((float) scale).ptr(be.ptr(out)).ptr(be.ptr(lse))
                .i32(d.seq()).i32(d.kvSeq()).i32(d.qHeads()).i32(d.kvHeads()));
    }

    static void backward(CudaBackend be, AttentionDims d, Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor segments, double scale,
                         Tensor out, Tensor lse, Tensor dq, Tensor dk, Tensor dv) {
        ElementType t = ElementType.of(q.dtype());
        long seg = segments == null ? 0 : be.ptr(segments);
        long rows = (long) d.batch() * d.seq() * d.qHeads();
        try (CudaTensor delta = be.allocateUninitialized(DType.F32, Shape.of(Math.toIntExact(rows)))) {
            be.kernel(KernelId.ATTENTION_DELTA, t).launch(Grid.blocks(Math.ceilDiv(rows, Grid.THREADS / 32), Grid.THREADS),
                    LaunchArgs.of().ptr(be.ptr(dOut)).ptr(be.ptr(out)).ptr(delta.address()).i32(d.batch()).i32(d.seq())
                            .i32(d.qHeads()).i32(d.headDim()));
            Grid kv = new Grid(Math.ceilDiv(d.seq(), KEY_ROWS), d.kvHeads(), d.batch(), THREADS, 1, 1, dkdvSharedBytes(d.headDim()));
            be.kernel(dkdvKernel(d.headDim()), t).launch(kv, LaunchArgs.of().ptr(be.ptr(dOut)).ptr(be.ptr(q)).ptr(be.ptr(k))
                    .ptr(be.ptr(v)).ptr(seg).f32((float) scale).ptr(be.ptr(lse)).ptr(delta.address()).ptr(be.ptr(dk)).ptr(be.ptr(dv))
                    .i32(d.seq()).i32(d.qHeads()).i32(d.kvHeads()));
            Grid qg = new Grid(Math.ceilDiv(d.seq(), QUERY_ROWS), d.qHeads(), d.batch(), THREADS, 1, 1, dqSharedBytes(d.headDim()));
            be.kernel(dqKernel(d.headDim()), t).launch(qg, LaunchArgs.of().ptr(be.ptr(dOut)).ptr(be.ptr(q)).ptr(be.ptr(k))
                    .ptr(be.ptr(v)).ptr(seg).f32((float) scale).ptr(be.ptr(lse)).ptr(delta.address()).ptr(be.ptr(dq))
                    .i32(d.seq()).i32(d.qHeads()).i32(d.kvHeads()));
        }
    }
}
