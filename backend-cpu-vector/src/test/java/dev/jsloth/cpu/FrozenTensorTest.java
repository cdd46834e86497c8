package dev.jsloth.cpu;

import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/**
 * {@code Backend.freeze} on the CPU backend: a frozen tensor's GEMM panels are packed once and kept, which must change
 * no bit of any product (decoding's X W^T, which reads W as stored, {@link GemmFewRows}, aside), and the tensor refuses
 * writes.
 */
class FrozenTensorTest extends CpuBackendTests {
    /**
     * The same products with B frozen (first use packs and keeps, second reuses) and not: the same bits, for plain and
     * fused low-rank products, both B layouts, F32 and BF16 storage, K over several K blocks, N over several column
     * blocks (2100 x 2100 B is more than one packed-B budget) and partial panels, and a short M (B streamed, kept panels or not).
     */
    @ParameterizedTest
    @CsvSource({"30,2100,2100,16", "97,40,1025,8", "13,100,300,4", "1,1408,512,16", "64,33,17,0"})
    void keptPanelsGiveTheSameBitsAsPackingPerProduct(int m, int n, int k, int rank) {
        SplittableRandom r = new SplittableRandom(m * 31L + n * 7L + k);
        for (boolean tb : new boolean[]{false, true}) {
            for (DType storage : new DType[]{DType.F32, DType.BF16}) {
                double[] av = random(r, m * k), bv = random(r, k * n), lv = random(r, m * Math.max(rank, 1)), rv = random(r, Math.max(rank, 1) * n);
                Shape bShape = tb ? Shape.of(n, k) : Shape.of(k, n);
                try (Tensor a = be.upload(storage, Shape.of(m, k), av);
                     Tensor plain = be.upload(storage, bShape, bv);
                     Tensor frozen = be.upload(storage, bShape, bv);
                     Tensor l = be.upload(storage, Shape.of(m, Math.max(rank, 1)), lv);
                     Tensor rt = be.upload(storage, tb ? Shape.of(n, Math.max(rank, 1)) : Shape.of(Math.max(rank, 1), n), rv);
                     Tensor c = be.allocate(DType.F32, m, n)) {
                    be.freeze(frozen);
                    String what = m + "x" + n + "x" + k + " r=" + rank + " transB=" + tb + " " + storage;
                    double[] want = product(a, plain, l, rt, rank, tb, c);
                    if (tb && m <= GemmFewRows.DECODING_ROWS) { // a frozen W^T for a few rows is read as stored (GemmFewRows): other sums' order
                        double[] first = product(a, frozen, l, rt, rank, tb, c);
                        for (int i = 0; i < want.length; i++) assertEquals(want[i], first[i], 1e-5 * (1 + Math.abs(want[i])), what + " at " + i);
                        assertArrayEquals(first, product(a, frozen, l, rt, rank, tb, c), 0.0, what + ": the same bits again");
                        continue;
                    }
                    assertArrayEquals(want, product(a, frozen, l, rt, rank, tb, c), 0.0, what + ": first use");
                    assertArrayEquals(want, product(a, frozen, l, rt, rank, tb, c), 0.0, what + ": kept panels");
                }
            }
        }
    }

    private static double[] product(Tensor a, Tensor b, Tensor l, Tensor r, int rank, boolean tb, Tensor c) {
        if (rank == 0) be.kernels().gemm(false, tb, 0.75, a, b, 0.0, c);
        else be.kernels().gemmPlusLowRank(false, tb, 0.75, a, b, 2.0, l, r, 0.0, c);
        return be.download(c);
    }

    @Test
    void aFrozenTensorAndItsViewsRefuseWritesAndStillRead() {
        try (Tensor t = be.upload(DType.F32, Shape.of(4, 8), random(new SplittableRandom(1), 32))) {
            Tensor view = t.rows(1, 2);
            double[] before = be.download(t);
            be.freeze(t);
            assertThrows(UnsupportedOperationException.class, () -> be.kernels().fill(t, 1.0));
            assertThrows(UnsupportedOperationException.class, () -> be.kernels().fill(view, 1.0));
            assertThrows(UnsupportedOperationException.class, () -> be.kernels().fill(t.rows(0, 1), 1.0));
            assertArrayEquals(before, be.download(t), 0.0);
            assertThrows(IllegalArgumentException.class, () -> be.freeze(view), "a view is frozen through its root only");
        }
        // the same refusal whatever the length (runs too short for a vector, a vector and a tail, F64 storage)
        for (int[] dims : new int[][]{{1, 1}, {3, 7}, {1, 33}}) {
            for (DType type : new DType[]{DType.F32, DType.F64, DType.BF16}) {
                try (Tensor t = be.upload(type, Shape.of(dims[0], dims[1]), random(new SplittableRandom(5), dims[0] * dims[1]))) {
                    be.freeze(t);
                    assertThrows(UnsupportedOperationException.class, () -> be.kernels().fill(t, 1.0), type + " " + dims[0] + "x" + dims[1]);
                }
            }
        }
    }

    /** Kept panels count as live memory (one block per B layout used) and are freed with their tensor. */
    @Test
    void keptPanelsAreLiveMemoryUntilTheTensorIsFreed() {
        int m = 40, n = 70, k = 50;
        long wT = 4L * k * panelColumns(n), w = 4L * n * panelColumns(k); // W^T's panels: 50 deep; W's: 70 deep
        long base = be.memoryStats().liveBytes();
        Tensor a = be.upload(DType.F32, Shape.of(m, k), random(new SplittableRandom(2), m * k));
        Tensor at = be.upload(DType.F32, Shape.of(m, n), random(new SplittableRandom(3), m * n));
        Tensor weight = be.upload(DType.F32, Shape.of(n, k), random(new SplittableRandom(4), n * k));
        Tensor y = be.allocate(DType.F32, m, n), dx = be.allocate(DType.F32, m, k);
        long tensors = be.memoryStats().liveBytes();
        be.freeze(weight);
        be.kernels().gemm(false, true, 1.0, a, weight, 0.0, y);   // X W^T: W^T's panels
        be.kernels().gemm(false, true, 1.0, a, weight, 0.0, y);   // kept: nothing more
        assertEquals(tensors + wT, be.memoryStats().liveBytes());
        be.kernels().gemm(false, false, 1.0, at, weight, 0.0, dx); // dY W: W's own panels
        assertEquals(tensors + wT + w, be.memoryStats().liveBytes());
        weight.close();
        for (Tensor t : new Tensor[]{a, at, y, dx}) t.close();
        assertEquals(base, be.memoryStats().liveBytes());
    }

    /** Columns packed for n: whole panels of the microkernel's width. */
    private static long panelColumns(int n) {
        return (long) (n + GemmMicrokernels.NR - 1) / GemmMicrokernels.NR * GemmMicrokernels.NR;
    }
}
