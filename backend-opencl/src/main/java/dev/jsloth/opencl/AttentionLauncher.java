package dev.jsloth.opencl;

import dev.jsloth.api.AttentionDims;
import dev.jsloth.api.DType;
import org.jocl.cl_kernel;

/**
 * Launches the attention kernels of attention.cl: picks the head-dimension bucket, the rows per work-group (what
 * the compiled kernel allows, at most {@link LaunchConfig#ATTENTION_ROWS}) and the largest tile of staged rows
 * that fits the device's local memory. The backward pass runs three kernels: the row dot products D, then dK/dV
 * (one work-item per key row) and dQ (one per query row), so no two work-items ever write the same element.
 * On NVIDIA GPUs with tensor cores ({@link LaunchConfig#tensorCores()}), 16-bit attention at head dimensions 64 and
 * 128 runs on flash_attention.cl instead: work-groups of 128 work-items (4 warps of 16 rows),
 * 64 query rows (forward, dQ) or key rows (dK/dV) each.
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

    /** Work-items and rows (queries or keys) per work-group of flash_attention.cl's kernels. */
    static final int FLASH_THREADS = 128, FLASH_ROWS = 64;

    /**
     * Whether flash_attention.cl takes this call: tensor cores on, head dimension 64 or 128, all tensors BF16 or all
     * F16 starting 16-byte aligned, F32 lse.
     */
    private boolean flash(AttentionDims d, boolean backward, OpenClTensor lse, OpenClTensor... tensors) {
        if (!be.config().tensorCores() || lse.dtype() != DType.F32) return false;
        if (d.headDim() != 64 && (d.headDim() != 128 || (backward && !LaunchConfig.FLASH_BACKWARD_128))) return false;
        DType t = tensors[0].dtype();
        if (t != DType.BF16 && t != DType.F16) return false;
        for (OpenClTensor x : tensors) if (x.dtype() != t || x.offset() % 8 != 0) return false;
        return true;
    }

    private Launch flashLaunch(int headDim, DType t, String name) {
        return new Launch(be, be.library().flashKernel(headDim, t, name), Precision.FLOAT);
    }

    private static long[] flashGrid(AttentionDims d) {
        return new long[]{(long) Math.ceilDiv(d.seq(), FLASH_ROWS) * FLASH_THREADS, d.qHeads(), d.batch()};
    }

    void forward(AttentionDims d, OpenClTensor q, OpenClTensor k, OpenClTensor v, OpenClTensor segments, double scale,
                 OpenClTensor out, OpenClTensor lse) {
        if (flash(d, false, lse, q, k, v, out)) {
            flashLaunch(d.headDim(), q.dtype(), "flash_forward").tensor(q).tensor(k).tensor(v).ints(segments).flag(segments != null)
                    .real(scale).tensor(out).tensor(lse).i32(d.seq()).i32(d.kvSeq()).i32(d.qHeads()).i32(d.kvHeads())
                    .run(flashGrid(d), new long[]{FLASH_THREADS, 1, 1});
            return;
        }
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
        if (flash(d, true, lse, dOut, q, k, v, out, dq, dk, dv)) {
            flashBackward(d, dOut, q, k, v, segments, scale, out, lse, dq, dk, dv);
            return;
        }
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

    /**
     * The tensor-core backward: the row dot products, dK/dV per (key tile, query head) — with
     * GQA into fp32 partials that flash_group_sum adds up per group in head order — and dQ.
     */
    private void flashBackward(AttentionDims d, OpenClTensor dOut, OpenClTensor q, OpenClTensor k, OpenClTensor v,
                               OpenClTensor segments, double scale, OpenClTensor out, OpenClTensor lse, OpenClTensor dq,
                               OpenClTensor dk, OpenClTensor dv) {
        DType t = q.dtype();
        long rows = (long) d.batch() * d.qHeads() * d.seq();
        int group = d.qHeads() / d.kvHeads();
        long partElements = group == 1 ? 1 : rows * d.headDim();
        try (OpenClTensor delta = be.scratch(Precision.FLOAT, rows);
             OpenClTensor dkPart = group == 1 ? null : be.scratch(Precision.FLOAT, partElements);
             OpenClTensor dvPart = group == 1 ? null : be.scratch(Precision.FLOAT, partElements)) {
            flashLaunch(d.headDim(), t, "flash_delta").tensor(dOut).tensor(out).scratch(delta).i64(rows).i32(d.seq())
                    .i32(d.qHeads()).run(rows * (d.headDim() / 8), FLASH_THREADS);
            // dK/dV and dQ take the same inputs first: dOut, q, k, v, the segments, scale, lse, delta
            java.util.function.Function<String, Launch> backwardKernel = name -> flashLaunch(d.headDim(), t, name)
                    .tensor(dOut).tensor(q).tensor(k).tensor(v).ints(segments).flag(segments != null).real(scale).tensor(lse)
                    .scratch(delta);
            backwardKernel.apply("flash_backward_dkdv").tensor(dk).tensor(dv)
                    .mem(group == 1 ? be.placeholder() : dkPart.buffer()).mem(group == 1 ? be.placeholder() : dvPart.buffer())
                    .flag(group > 1).i32(d.seq()).i32(d.qHeads()).i32(d.kvHeads())
                    .run(flashGrid(d), new long[]{FLASH_THREADS, 1, 1});
            if (group > 1) {
                long kvRows = (long) d.batch() * d.seq() * d.kvHeads();
                for (OpenClTensor[] pair : new OpenClTensor[][]{{dkPart, dk}, {dvPart, dv}})
                    flashLaunch(d.headDim(), t, "flash_group_sum").scratch(pair[0]).tensor(pair[1]).i64(kvRows).i32(group)
                            .run(kvRows * d.headDim(), be.config().simpleGroup());
            }
            backwardKernel.apply("flash_backward_dq").tensor(dq).i32(d.seq()).i32(d.qHeads()).i32(d.kvHeads())
                    .run(flashGrid(d), new long[]{FLASH_THREADS, 1, 1});
        }
    }
}
