package dev.jsloth.opencl;

import dev.jsloth.api.AttentionDims;
import org.jocl.cl_kernel;

/**
 * Launches the attention kernels of attention.cl: picks the head-dimension bucket, the rows per work-group (what
 * the compiled kernel allows, at most {@link LaunchConfig#ATTENTION_ROWS}) and the largest tile of staged rows
 * that fits the device's local memory. The backward pass runs three kernels: the row dot products D, then dK/dV
 * (one work-item per key row) and dQ (one per query row), so no two work-items ever write the same element.
 */
final class AttentionLauncher {
    private final OpenClBackend be;

    AttentionLauncher(OpenClBackend be) {
        this.be = be;
    }

    static int bucket(int headDim) {
        for (int b : KernelLibrary.ATTENTION_BUCKETS) if (headDim <= b) return b;
        int max = KernelLibrary.ATTENTION_BUCKETS[KernelLibrary.ATTENTION_BUCKETS.length - 1];
        throw new UnsupportedOperationException("OpenCL attention supports head dimensions up to " + max + ", got " + headDim);
    }

    private record Kernel(cl_kernel kernel, Precision precision, int rows) {
        Launch launch(OpenClBackend be) {
            return new Launch(be, kernel, precision);
        }
    }

    private Kernel kernel(Precision p, int bucket, String name) {
        be.require(p);
        cl_kernel k = be.library().attentionKernel(p, bucket, name);
        long max = be.library().maxWorkGroupSize(k);
        int rows = Integer.highestOneBit((int) Math.max(1, Math.min(LaunchConfig.ATTENTION_ROWS, max)));
        return new Kernel(k, p, rows);
    }

    /** The largest power-of-two tile (at most ATT_TILE_MAX rows) whose staging fits in local memory. */
    private int tile(long bytesPerRow) {
        long budget = be.config().localMemBytes() - 1024; // leave room for the compiler's own local variables
        int tile = LaunchConfig.ATTENTION_TILE_MAX;
        while (tile > 1 && tile * bytesPerRow > budget) tile >>= 1;
        if (tile * bytesPerRow > budget)
            throw new UnsupportedOperationException("attention tiles do not fit in " + be.device().name() + "'s "
                    + be.config().localMemBytes() + " bytes of local memory");
        return tile;
    }

    void forward(AttentionDims d, OpenClTensor q, OpenClTensor k, OpenClTensor v, OpenClTensor segments, double scale,
                 OpenClTensor out, OpenClTensor lse) {
        int bucket = bucket(d.headDim());
        Kernel kf = kernel(Precision.of(q, k, v, out, lse), bucket, "attention_forward");
        int rowBytes = kf.precision().bytes() * bucket;
        int tile = tile(2L * rowBytes);
        kf.launch(be).i32(d.seq()).i32(d.kvSeq()).i32(d.qHeads()).i32(d.kvHeads()).i32(d.headDim()).real(scale).i32(tile)
                .tensor(q).tensor(k).tensor(v).ints(segments).flag(segments != null).tensor(out).tensor(lse)
                .local((long) tile * rowBytes).local((long) tile * rowBytes)
                .run(new long[]{Launch.roundUp(d.seq(), kf.rows()), (long) d.batch() * d.qHeads()}, new long[]{kf.rows(), 1});
    }

    void backward(AttentionDims d, OpenClTensor dOut, OpenClTensor q, OpenClTensor k, OpenClTensor v, OpenClTensor segments,
                  double scale, OpenClTensor out, OpenClTensor lse, OpenClTensor dq, OpenClTensor dk, OpenClTensor dv) {
        int bucket = bucket(d.headDim());
        Precision p = Precision.of(dOut, q, k, v, out, lse, dq, dk, dv);
        long rows = (long) d.batch() * d.qHeads() * d.seq();
        try (OpenClTensor delta = be.scratch(p, rows)) {
            Kernel kd = kernel(p, bucket, "attention_backward_delta");
            kd.launch(be).i64(rows).i32(d.seq()).i32(d.qHeads()).i32(d.headDim()).tensor(dOut).tensor(out).scratch(delta)
                    .run(rows, be.config().simpleGroup());

            int rowBytes = p.bytes() * bucket;
            Kernel kkv = kernel(p, bucket, "attention_backward_dkdv");
            int tileKv = tile(2L * rowBytes + 2L * p.bytes() + 4);
            kkv.launch(be).i32(d.seq()).i32(d.qHeads()).i32(d.kvHeads()).i32(d.headDim()).real(scale).i32(tileKv)
                    .tensor(dOut).tensor(q).tensor(k).tensor(v).ints(segments).flag(segments != null).tensor(lse).scratch(delta)
                    .tensor(dk).tensor(dv)
                    .local((long) tileKv * rowBytes).local((long) tileKv * rowBytes)
                    .local((long) tileKv * p.bytes()).local((long) tileKv * p.bytes()).local(4L * tileKv)
                    .run(new long[]{Launch.roundUp(d.seq(), kkv.rows()), (long) d.batch() * d.kvHeads()}, new long[]{kkv.rows(), 1});

            Kernel kq = kernel(p, bucket, "attention_backward_dq");
            int tileQ = tile(2L * rowBytes);
            kq.launch(be).i32(d.seq()).i32(d.qHeads()).i32(d.kvHeads()).i32(d.headDim()).real(scale).i32(tileQ)
                    .tensor(dOut).tensor(q).tensor(k).tensor(v).ints(segments).flag(segments != null).tensor(lse).scratch(delta)
                    .tensor(dq)
                    .local((long) tileQ * rowBytes).local((long) tileQ * rowBytes)
                    .run(new long[]{Launch.roundUp(d.seq(), kq.rows()), (long) d.batch() * d.qHeads()}, new long[]{kq.rows(), 1});
        }
    }
}
