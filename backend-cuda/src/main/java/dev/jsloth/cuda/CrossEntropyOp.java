package dev.jsloth.cuda;

import dev.jsloth.api.Tensor;

/**
 * Row-wise cross-entropy (arguments, labels included, already checked by {@link CudaKernels}). The kernels take the
 * logits' type and the per-row statistics' type separately, so F32 logits with F64 loss and lse (as the fused LM
 * head allocates them) need no conversion.
 */
final class CrossEntropyOp {
    /** Threads per row in the forward kernel; equals CE_THREADS in cross_entropy.cu. */
    static final int THREADS = 256;

    private CrossEntropyOp() {
    }

    static void forward(CudaBackend be, Tensor logits, Tensor labels, int ignoreIndex, Tensor loss, Tensor lse, long n, long vocab) {
        if (n == 0) return;
        try (TypeGroup x = TypeGroup.of(be, logits); TypeGroup s = TypeGroup.of(be, loss, lse)) {
            long pl = x.in(logits), ploss = s.out(loss), plse = s.out(lse);
            be.kernel(KernelId.CROSS_ENTROPY_FORWARD, x.type(), s.type()).launch(Grid.blocks(n, THREADS),
                    LaunchArgs.of().ptr(pl).ptr(be.ptr(labels)).i32(ignoreIndex).ptr(ploss).ptr(plse).i64(n).i64(vocab));
        }
    }

    static void backward(CudaBackend be, Tensor logits, Tensor labels, Tensor lse, int ignoreIndex, double scale, Tensor dLogits,
                         long n, long vocab) {
        if (n * vocab == 0) return;
        try (TypeGroup x = TypeGroup.of(be, logits, dLogits); TypeGroup s = TypeGroup.of(be, lse)) {
            long pl = x.in(logits), plse = s.in(lse), pd = x.out(dLogits);
            // rows on grid y, each row's 16-byte packs on grid x (both grid-stride)
            long packsPerRow = Math.ceilDiv(vocab * x.type().bytes, 16);
            Grid grid = new Grid((int) Math.min(Grid.MAX_BLOCKS, Math.ceilDiv(packsPerRow, Grid.THREADS)), (int) Math.min(n, 65535), 1,
                    Grid.THREADS, 1, 1, 0);
            be.kernel(KernelId.CROSS_ENTROPY_BACKWARD, x.type(), s.type()).launch(grid,
                    LaunchArgs.of().ptr(pl).ptr(be.ptr(labels)).ptr(plse).i32(ignoreIndex).f64(scale).ptr(pd).i64(n).i64(vocab));
        }
    }
}
