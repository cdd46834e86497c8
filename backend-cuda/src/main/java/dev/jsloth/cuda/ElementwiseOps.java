package dev.jsloth.cuda;

import dev.jsloth.api.AdamWStep;
import dev.jsloth.api.Tensor;

/** Elementwise maps, the row broadcast and AdamW (arguments already checked by {@link CudaKernels}). */
final class ElementwiseOps {
    private ElementwiseOps() {
    }

    static void add(CudaBackend be, Tensor a, Tensor b, Tensor out, long n) {
        if (n == 0) return;
        try (TypeGroup g = TypeGroup.of(be, a, b, out)) {
            long pa = g.in(a), pb = g.in(b), po = g.out(out);
            be.kernel(KernelId.ADD, g.type()).launch(Grid.packed(n, g.type().bytes), LaunchArgs.of().ptr(pa).ptr(pb).ptr(po).i64(n));
        }
    }

    static void axpy(CudaBackend be, double alpha, Tensor x, Tensor y, long n) {
        if (n == 0) return;
        try (TypeGroup g = TypeGroup.of(be, x, y)) {
            long px = g.in(x), py = g.inOut(y);
            be.kernel(KernelId.AXPY, g.type()).launch(Grid.linear(n), LaunchArgs.of().f64(alpha).ptr(px).ptr(py).i64(n));
        }
    }

    static void scale(CudaBackend be, long x, ElementType type, double alpha, long n) {
        if (n == 0) return;
        be.kernel(KernelId.SCALE, type).launch(Grid.linear(n), LaunchArgs.of().ptr(x).f64(alpha).i64(n));
    }

    /** Dropout's mask over x into out (one type; out may be x): {@link dev.jsloth.api.ops.Dropout}'s draws. */
    static void dropoutMask(CudaBackend be, long x, long out, ElementType type, long n, long seed, int threshold) {
        if (n == 0) return;
        be.kernel(KernelId.DROPOUT_MASK, type).launch(Grid.packed(n, type.bytes), LaunchArgs.of().ptr(x).ptr(out).i64(n).i64(seed).i32(threshold));
    }

    static void fill(CudaBackend be, long x, ElementType type, double value, long n) {
        if (n == 0) return;
        be.kernel(KernelId.FILL, type).launch(Grid.linear(n), LaunchArgs.of().ptr(x).f64(value).i64(n));
    }

    static void addRowVector(CudaBackend be, Tensor x, Tensor bias, long rows, long cols) {
        if (rows * cols == 0) return;
        try (TypeGroup g = TypeGroup.of(be, x, bias)) {
            long px = g.inOut(x), pb = g.in(bias);
            be.kernel(KernelId.ADD_ROW_VECTOR, g.type()).launch(Grid.linear(rows * cols),
                    LaunchArgs.of().ptr(px).ptr(pb).i64(rows).i64(cols));
        }
    }

    /** PyTorch's AdamW (single-tensor path): the step's scalars in double here, the update per element there. */
    static void adamw(CudaBackend be, Tensor param, Tensor grad, Tensor m, Tensor v, AdamWStep s, long n) {
        if (n == 0) return;
        double decay = 1 - s.lr() * s.weightDecay();
        double bc1 = 1 - Math.pow(s.beta1(), s.step());
        double bc2Sqrt = Math.sqrt(1 - Math.pow(s.beta2(), s.step()));
        double stepSize = s.lr() / bc1;
        try (TypeGroup g = TypeGroup.of(be, param, grad, m, v)) {
            long pp = g.inOut(param), pg = g.in(grad), pm = g.inOut(m), pv = g.inOut(v);
            be.kernel(KernelId.ADAMW, g.type()).launch(Grid.linear(n), LaunchArgs.of().ptr(pp).ptr(pg).ptr(pm).ptr(pv).i64(n)
                    .f64(decay).f64(s.beta2()).f64(1 - s.beta1()).f64(1 - s.beta2()).f64(bc2Sqrt).f64(stepSize).f64(s.eps()));
        }
    }
}
