package dev.jsloth.cuda;

import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;

/**
 * RMSNorm, rotary embedding and SwiGLU (arguments already checked by {@link CudaKernels}). RMSNorm's kernels take
 * two element types, the activations' and the weight's, so a BF16 weight works with F32 activations as stored.
 */
final class NormOps {
    private NormOps() {
    }

    /** Threads per row for a row of {@code d} elements: a multiple of 32, at most 256. */
    static int rowThreads(long d) {
        return (int) Math.max(32, Math.min(Grid.THREADS, Math.ceilDiv(d, 32) * 32));
    }

    static void rmsNormForward(CudaBackend be, Tensor x, Tensor weight, double eps, Tensor y, Tensor rstd, long n, int d) {
        if (n == 0 || d == 0) return;
        try (TypeGroup g = TypeGroup.of(be, x, y, rstd); TypeGroup w = TypeGroup.of(be, weight)) {
            long px = g.in(x), pw = w.in(weight), py = g.out(y), pr = g.out(rstd);
            be.kernel(KernelId.RMS_NORM_FORWARD, g.type(), w.type()).launch(Grid.blocks(n, rowThreads(d)),
                    LaunchArgs.of().ptr(px).ptr(pw).f64(eps).ptr(py).ptr(pr).i64(n).i32(d));
        }
    }

    /** RMSNorm's backward; with a non-null {@code residual}, dx gets it added in the same pass. */
    static void rmsNormBackward(CudaBackend be, Tensor dy, Tensor x, Tensor weight, Tensor rstd, Tensor residual, Tensor dx,
                                Tensor dWeight, long n, int d) {
        if (n == 0 || d == 0) return;
        try (TypeGroup g = TypeGroup.of(be, dy, x, rstd, residual, dx); TypeGroup w = TypeGroup.of(be, weight, dWeight)) {
            long pdy = g.in(dy), px = g.in(x), pr = g.in(rstd), pres = residual == null ? 0 : g.in(residual), pw = w.in(weight);
            long pdx = g.out(dx);
            be.kernel(KernelId.RMS_NORM_BACKWARD, g.type(), w.type()).launch(Grid.blocks(n, rowThreads(d)),
                    LaunchArgs.of().ptr(pdy).ptr(px).ptr(pw).ptr(pr).ptr(pres).ptr(pdx).i64(n).i32(d));
            if (dWeight != null) {
                long pdw = w.inOut(dWeight);
                Reductions.Chunking ch = Reductions.Chunking.of(n);
                try (CudaTensor partial = be.allocateUninitialized(DType.F64, Shape.of(ch.chunks(), d))) {
                    be.kernel(KernelId.RMS_NORM_WEIGHT_PARTIALS, g.type()).launch(ch.grid(d),
                            LaunchArgs.of().ptr(pdy).ptr(px).ptr(pr).i64(n).i64(d).i64(ch.rowsPerChunk()).ptr(partial.address()));
                    Reductions.reducePartials(be, partial, ch.chunks(), d, pdw, w.type(), true);
                }
            }
        }
    }

    static void rope(CudaBackend be, Tensor x, Tensor cos, Tensor sin, long n, int heads, int headDim, boolean inverse) {
        long pairs = n * heads * (headDim / 2);
        if (pairs == 0) return;
        try (TypeGroup g = TypeGroup.of(be, x, cos, sin)) {
            long px = g.inOut(x), pc = g.in(cos), ps = g.in(sin);
            be.kernel(KernelId.ROPE, g.type()).launch(Grid.packed(pairs, g.type().bytes),
                    LaunchArgs.of().ptr(px).ptr(pc).ptr(ps).i64(n).i32(heads).i32(headDim).i32(inverse ? 1 : 0));
        }
    }

    static void swigluForward(CudaBackend be, Tensor gate, Tensor up, Tensor out, long n) {
        if (n == 0) return;
        try (TypeGroup g = TypeGroup.of(be, gate, up, out)) {
            long pg = g.in(gate), pu = g.in(up), po = g.out(out);
            be.kernel(KernelId.SWIGLU_FORWARD, g.type()).launch(Grid.packed(n, g.type().bytes), LaunchArgs.of().ptr(pg).ptr(pu).ptr(po).i64(n));
        }
    }

    static void swigluBackward(CudaBackend be, Tensor dOut, Tensor gate, Tensor up, Tensor dGate, Tensor dUp, long n) {
        if (n == 0) return;
        try (TypeGroup g = TypeGroup.of(be, dOut, gate, up, dGate, dUp)) {
            long pd = g.in(dOut), pg = g.in(gate), pu = g.in(up), pdg = g.out(dGate), pdu = g.out(dUp);
            be.kernel(KernelId.SWIGLU_BACKWARD, g.type()).launch(Grid.packed(n, g.type().bytes),
                    LaunchArgs.of().ptr(pd).ptr(pg).ptr(pu).ptr(pdg).ptr(pdu).i64(n));
        }
    }
}
