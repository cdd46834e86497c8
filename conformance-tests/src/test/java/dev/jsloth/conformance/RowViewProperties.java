package dev.jsloth.conformance;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Kernels;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.ops.CrossEntropy;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.constraints.IntRange;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Every kernel on row views that start partway into their buffer (the engine slices micro-batches, loss chunks and
 * packed rows this way): offsets of 1, 3 and 8 rows, so that BF16 rows start at addresses that are not 16-byte
 * aligned and kernels with vector loads must take their scalar path, or check alignment. Each result is compared with
 * the same kernel on contiguous tensors holding the same values, on the same backend, and with the reference.
 */
class RowViewProperties {
    @Provide
    Arbitrary<DType> types() {
        return Arbitraries.of(DType.F32, DType.BF16, DType.F64);
    }

    @Provide
    Arbitrary<Integer> offsets() {
        return Arbitraries.of(1, 3, 8);
    }

    @Provide
    Arbitrary<Integer> widths() {
        return Arbitraries.oneOf(Arbitraries.of(1, 7, 8, 13, 16, 64, 130), Arbitraries.integers().between(1, 300));
    }

    /** A tensor of {@code off + rows} rows holding {@code values} from row {@code off}, and its view of those rows. */
    private record Viewed(Tensor parent, Tensor view, double[] values) implements AutoCloseable {
        static Viewed of(Backend be, DType dt, int off, int rows, int cols, double[] values, SplittableRandom r) {
            double[] all = new double[(off + rows) * cols];
            for (int i = 0; i < off * cols; i++) all[i] = r.nextDouble(-9, 9); // what the view must not touch
            System.arraycopy(values, 0, all, off * cols, values.length);
            Tensor p = be.upload(dt, Shape.of(off + rows, cols), all);
            double[] stored = be.download(p);
            return new Viewed(p, p.rows(off, rows), java.util.Arrays.copyOfRange(stored, off * cols, stored.length));
        }

        double[] before(Backend be, int off, int cols) {
            return java.util.Arrays.copyOfRange(be.download(parent), 0, off * cols);
        }

        @Override
        public void close() {
            parent.close();
        }
    }

    private static void same(String what, Backend be, Tensor contiguous, Tensor view, DType dt) {
        Compare.close(be.name() + " " + what + " on a row view", be.download(contiguous), be.download(view), dt);
    }

    @Property(tries = 40)
    void elementwiseAndActivationsOnRowViews(@ForAll("types") DType dt, @ForAll("offsets") int off, @ForAll @IntRange(min = 1, max = 12) int rows,
                                             @ForAll("widths") int cols, @ForAll long seed) {
        for (Backend be : BackendsUnderTest.all()) {
            Kernels k = be.kernels();
            SplittableRandom r = new SplittableRandom(seed);
            int n = rows * cols;
            double[] av = TestData.uniform(r, n, -2, 2), bv = TestData.uniform(r, n, -2, 2), dv = TestData.uniform(r, n, -1, 1);
            List<AutoCloseable> open = new ArrayList<>();
            try (Viewed a = Viewed.of(be, dt, off, rows, cols, av, r); Viewed b = Viewed.of(be, dt, off, rows, cols, bv, r);
                 Viewed d = Viewed.of(be, dt, off, rows, cols, dv, r); Viewed out = Viewed.of(be, dt, off, rows, cols, new double[n], r);
                 Viewed out2 = Viewed.of(be, dt, off, rows, cols, new double[n], r);
                 Tensor ac = be.upload(dt, Shape.of(rows, cols), a.values()); Tensor bc = be.upload(dt, Shape.of(rows, cols), b.values());
                 Tensor dc = be.upload(dt, Shape.of(rows, cols), d.values()); Tensor oc = be.allocate(dt, rows, cols);
                 Tensor oc2 = be.allocate(dt, rows, cols)) {
                double[] untouched = out.before(be, off, cols);
                k.add(a.view(), b.view(), out.view());
                k.add(ac, bc, oc);
                same("add", be, oc, out.view(), dt);
                double[] sum = new double[n];
                for (int i = 0; i < n; i++) sum[i] = a.values()[i] + b.values()[i];
                Compare.close(be.name() + " add on a row view", sum, be.download(out.view()), dt);
                k.axpy(0.5, a.view(), out.view());
                k.axpy(0.5, ac, oc);
                same("axpy", be, oc, out.view(), dt);
                k.scale(out.view(), -1.5);
                k.scale(oc, -1.5);
                same("scale", be, oc, out.view(), dt);
                k.swigluForward(a.view(), b.view(), out.view());
                k.swigluForward(ac, bc, oc);
                same("swiglu", be, oc, out.view(), dt);
                k.swigluBackward(d.view(), a.view(), b.view(), out.view(), out2.view());
                k.swigluBackward(dc, ac, bc, oc, oc2);
                same("swiglu dgate", be, oc, out.view(), dt);
                same("swiglu dup", be, oc2, out2.view(), dt);
                k.copy(a.view(), out.view());
                same("copy", be, ac, out.view(), dt);
                Compare.close(be.name() + " rows before the view untouched", untouched, out.before(be, off, cols), 0.0);
                Compare.close(be.name() + " sumOfSquares on a row view", new double[]{k.sumOfSquares(ac)}, new double[]{k.sumOfSquares(a.view())}, dt);
                try (Tensor wide = be.allocate(DType.F32, rows, cols)) { // a conversion out of the view
                    k.copy(a.view(), wide);
                    double[] asFloat = a.values().clone();
                    for (int i = 0; i < asFloat.length; i++) asFloat[i] = (float) asFloat[i]; // F64 rounds to nearest
                    Compare.close(be.name() + " copy to F32 from a row view", asFloat, be.download(wide), 0.0);
                }
            }
        }
    }

    @Property(tries = 30)
    void normRopeGemmAndLossOnRowViews(@ForAll("types") DType dt, @ForAll("offsets") int off, @ForAll @IntRange(min = 1, max = 10) int rows,
                                       @ForAll @IntRange(min = 1, max = 4) int heads, @ForAll @IntRange(min = 1, max = 24) int halfHead,
                                       @ForAll long seed) {
        int hd = 2 * halfHead, cols = heads * hd;
        for (Backend be : BackendsUnderTest.all()) {
            Kernels k = be.kernels();
            SplittableRandom r = new SplittableRandom(seed);
            int n = rows * cols;
            double[] xv = TestData.uniform(r, n, -2, 2), dyv = TestData.uniform(r, n, -1, 1);
            double[] cv = TestData.uniform(r, rows * halfHead, -1, 1), sv = TestData.uniform(r, rows * halfHead, -1, 1);
            DType st = TestData.statsType(dt);
            try (Viewed x = Viewed.of(be, dt, off, rows, cols, xv, r); Viewed dy = Viewed.of(be, dt, off, rows, cols, dyv, r);
                 Viewed y = Viewed.of(be, dt, off, rows, cols, new double[n], r); Viewed dx = Viewed.of(be, dt, off, rows, cols, new double[n], r);
                 Viewed cos = Viewed.of(be, dt, off, rows, halfHead, cv, r); Viewed sin = Viewed.of(be, dt, off, rows, halfHead, sv, r);
                 Tensor xc = be.upload(dt, Shape.of(rows, cols), x.values()); Tensor dyc = be.upload(dt, Shape.of(rows, cols), dy.values());
                 Tensor yc = be.allocate(dt, rows, cols); Tensor dxc = be.allocate(dt, rows, cols);
                 Tensor cc = be.upload(dt, Shape.of(rows, halfHead), cos.values()); Tensor sc = be.upload(dt, Shape.of(rows, halfHead), sin.values());
                 var w = TestData.random(be, dt, r, 0.5, 1.5, cols);
                 Tensor rstd = be.allocate(st, rows); Tensor rstdc = be.allocate(st, rows);
                 Tensor dw = be.allocate(dt, cols); Tensor dwc = be.allocate(dt, cols)) {
                k.rmsNormForward(x.view(), w.tensor(), 1e-5, y.view(), rstd);
                k.rmsNormForward(xc, w.tensor(), 1e-5, yc, rstdc);
                same("rmsnorm", be, yc, y.view(), dt);
                k.rmsNormBackward(dy.view(), x.view(), w.tensor(), rstd, dx.view(), dw);
                k.rmsNormBackward(dyc, xc, w.tensor(), rstdc, dxc, dwc);
                same("rmsnorm dx", be, dxc, dx.view(), dt);
                Compare.close(be.name() + " rmsnorm dweight from row views", be.download(dwc), be.download(dw), dt);
                k.copy(x.view(), y.view());
                k.copy(xc, yc);
                k.rope(y.view(), cos.view(), sin.view(), heads, false);
                k.rope(yc, cc, sc, heads, false);
                same("rope", be, yc, y.view(), dt);
                // C[rows, cols] = X[rows, cols] W^T with W [cols, cols]: A and C row views
                try (var wm = TestData.random(be, dt, r, -0.5, 0.5, cols, cols)) {
                    k.gemm(false, true, 1, x.view(), wm.tensor(), 0, y.view());
                    k.gemm(false, true, 1, xc, wm.tensor(), 0, yc);
                    same("gemm", be, yc, y.view(), dt);
                    Compare.close(be.name() + " gemm on a row view", Reference.gemm(false, true, 1, x.values(), rows, cols, wm.values(), cols, cols, 0, null),
                            be.download(y.view()), dt);
                }
                int[] labels = new int[rows];
                for (int i = 0; i < rows; i++) labels[i] = r.nextInt(4) == 0 ? CrossEntropy.IGNORE_INDEX : r.nextInt(cols);
                try (Tensor lab = be.uploadInts(Shape.of(rows), labels); Tensor loss = be.allocate(st, rows); Tensor lse = be.allocate(st, rows);
                     Tensor lossc = be.allocate(st, rows); Tensor lsec = be.allocate(st, rows)) {
                    k.crossEntropyForward(x.view(), lab, CrossEntropy.IGNORE_INDEX, loss, lse);
                    k.crossEntropyForward(xc, lab, CrossEntropy.IGNORE_INDEX, lossc, lsec);
                    Compare.close(be.name() + " cross-entropy on a row view", be.download(lossc), be.download(loss), dt);
                    k.crossEntropyBackward(x.view(), lab, lse, CrossEntropy.IGNORE_INDEX, 0.5, dx.view());
                    k.crossEntropyBackward(xc, lab, lsec, CrossEntropy.IGNORE_INDEX, 0.5, dxc);
                    same("cross-entropy backward", be, dxc, dx.view(), dt);
                }
            }
        }
    }
}
