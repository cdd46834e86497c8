package dev.jsloth.cuda;

import dev.jsloth.api.AttentionDims;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;

/**
 * Causal grouped-query attention with the kernels of {@code attention.cu} (arguments already checked by
 * {@link CudaKernels}); 16-bit tensors of head dimension 64 or 128 go to the tensor cores ({@link FlashAttention}). The tile size (queries and keys per block) is the largest power of two whose shared
 * memory fits the device, and no larger than the sequence needs; the formulas here match the kernels' layouts.
 */
final class AttentionOp {
    /**
     * Queues attention_delta_kernel: {@code delta[b, h, t] = sum_c dOut[b,t,h,c] out[b,t,h,c]} for the backward (both
     * attention paths). Its grid gives a warp 32 / packs rows where a row is a power of two (at most 32) of 16-byte
     * packs, as the kernel's packed path takes them; where that path does not apply (unaligned tensors) the kernel's
     * grid-stride loop covers the rows with the warps there are.
     */
    static void delta(CudaBackend be, ElementType t, AttentionDims d, long dOut, long out, long delta) {
        long rows = (long) d.batch() * d.seq() * d.qHeads();
        int perPack = 16 / t.bytes, packs = d.headDim() / perPack;
        boolean packed = d.headDim() % perPack == 0 && packs <= 32 && Integer.bitCount(packs) == 1;
        int rowsPerBlock = Grid.THREADS / 32 * (packed ? 32 / packs : 1);
        be.kernel(KernelId.ATTENTION_DELTA, t).launch(Grid.blocks(Math.ceilDiv(rows, rowsPerBlock), Grid.THREADS),
                LaunchArgs.of().ptr(dOut).ptr(out).ptr(delta).i32(d.batch()).i32(d.seq()).i32(d.qHeads()).i32(d.headDim()));
    }

    private static final int MAX_TILE = 64;

    private AttentionOp() {
    }

    /**
     * Shared memory layouts, in bytes, for tiles of {@code t} rows of {@code d} elements of {@code acc} bytes: row
     * tiles (stride d + 1), square score tiles (stride t, or t + 1 when padded), per-row vectors and two segment-id
     * vectors, exactly as carved in attention.cu.
     */
    enum Layout {
        FORWARD(4, 1, 1, 3), DKDV(6, 2, 0, 2), DQ(5, 1, 0, 2);

        private final int rowTiles, squareTiles, squarePad, vectors;

        Layout(int rowTiles, int squareTiles, int squarePad, int vectors) {
            this.rowTiles = rowTiles;
            this.squareTiles = squareTiles;
            this.squarePad = squarePad;
            this.vectors = vectors;
        }

        long bytes(int t, int d, int acc) {
            return ((long) rowTiles * t * (d + 1) + (long) squareTiles * t * (t + squarePad) + (long) vectors * t) * acc
                    + 2L * t * Integer.BYTES;
        }

        /** The largest power-of-two tile up to {@code cap} that fits in {@code limit} bytes. */
        int tile(int d, int acc, long limit, int cap) {
            for (int t = MAX_TILE; t >= 1; t >>= 1)
                if (t <= cap && bytes(t, d, acc) <= limit) return t;
            if (bytes(1, d, acc) <= limit) return 1;
            throw new IllegalArgumentException("attention head dimension " + d + " needs more shared memory than the device's "
                    + limit + " bytes");
        }
    }

    private static int cap(int seq) {
        return Integer.highestOneBit(Math.max(1, seq - 1)) << 1;
    }

    static void forward(CudaBackend be, AttentionDims d, Tensor q, Tensor k, Tensor v, Tensor segments, double scale, Tensor out,
                        Tensor lse) {
        if (FlashAttention.applies(be, d, lse, q, k, v, out)) {
            FlashAttention.forward(be, d, q, k, v, segments, scale, out, lse);
            return;
        }
        try (TypeGroup g = TypeGroup.of(be, q, k, v, out, lse)) {
            ElementType t = g.type();
            int acc = t.accumulator().bytes;
            int tile = Layout.FORWARD.tile(d.headDim(), acc, be.device.maxSharedOptIn, cap(Math.max(d.seq(), d.kvSeq())));
            long pq = g.in(q), pk = g.in(k), pv = g.in(v), po = g.out(out), pl = g.out(lse);
            Grid grid = new Grid(Math.ceilDiv(d.seq(), tile), d.qHeads(), d.batch(), Grid.THREADS, 1, 1,
                    Math.toIntExact(Layout.FORWARD.bytes(tile, d.headDim(), acc)));
            be.kernel(KernelId.ATTENTION_FORWARD, t).launch(grid, LaunchArgs.of().ptr(pq).ptr(pk).ptr(pv)
                    .ptr(segments == null ? 0 : be.ptr(segments)).f64(scale).ptr(po).ptr(pl)
                    .i32(d.batch()).i32(d.seq()).i32(d.kvSeq()).i32(d.qHeads()).i32(d.kvHeads()).i32(d.headDim()).i32(tile));
        }
    }

    static void backward(CudaBackend be, AttentionDims d, Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor segments, double scale,
                         Tensor out, Tensor lse, Tensor dq, Tensor dk, Tensor dv) {
        if (FlashAttention.applies(be, d, lse, dOut, q, k, v, out, dq, dk, dv)) {
            FlashAttention.backward(be, d, dOut, q, k, v, segments, scale, out, lse, dq, dk, dv);
            return;
        }
        try (TypeGroup g = TypeGroup.of(be, dOut, q, k, v, out, lse, dq, dk, dv)) {
            ElementType t = g.type();
            ElementType accType = t.accumulator();
            int acc = accType.bytes;
            long pdo = g.in(dOut), pq = g.in(q), pk = g.in(k), pv = g.in(v), po = g.in(out), pl = g.in(lse);
            long pdq = g.out(dq), pdk = g.out(dk), pdv = g.out(dv);
            long seg = segments == null ? 0 : be.ptr(segments);
            long rows = (long) d.batch() * d.seq() * d.qHeads();
            try (CudaTensor delta = be.allocateUninitialized(accType.dtype, Shape.of(Math.toIntExact(rows)))) {
                delta(be, t, d, pdo, po, delta.address());

                int tileKv = Layout.DKDV.tile(d.headDim(), acc, be.device.maxSharedOptIn, cap(d.seq()));
                Grid gridKv = new Grid(Math.ceilDiv(d.seq(), tileKv), d.kvHeads(), d.batch(), Grid.THREADS, 1, 1,
                        Math.toIntExact(Layout.DKDV.bytes(tileKv, d.headDim(), acc)));
                be.kernel(KernelId.ATTENTION_BACKWARD_DKDV, t).launch(gridKv, LaunchArgs.of().ptr(pdo).ptr(pq).ptr(pk).ptr(pv).ptr(seg)
                        .f64(scale).ptr(pl).ptr(delta.address()).ptr(pdk).ptr(pdv)
                        .i32(d.batch()).i32(d.seq()).i32(d.qHeads()).i32(d.kvHeads()).i32(d.headDim()).i32(tileKv));

                int tileQ = Layout.DQ.tile(d.headDim(), acc, be.device.maxSharedOptIn, cap(d.seq()));
                Grid gridQ = new Grid(Math.ceilDiv(d.seq(), tileQ), d.qHeads(), d.batch(), Grid.THREADS, 1, 1,
                        Math.toIntExact(Layout.DQ.bytes(tileQ, d.headDim(), acc)));
                be.kernel(KernelId.ATTENTION_BACKWARD_DQ, t).launch(gridQ, LaunchArgs.of().ptr(pdo).ptr(pq).ptr(pk).ptr(pv).ptr(seg)
                        .f64(scale).ptr(pl).ptr(delta.address()).ptr(pdq)
                        .i32(d.batch()).i32(d.seq()).i32(d.qHeads()).i32(d.kvHeads()).i32(d.headDim()).i32(tileQ));
            }
        }
    }
}
