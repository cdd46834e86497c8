package dev.jsloth.cpu;

import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.quant.Nf4;
import dev.jsloth.api.quant.Nf4Weight;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link GemmFewRows}: X W^T for a few rows of X and a frozen W read as stored (F32, BF16, NF4), against sums in double, on
 * awkward sizes (k past and short of a vector, odd; n not a multiple of 4; 1 to 64 rows), storing and accumulating,
 * X plain and transposed; and the backend's GEMM takes it for decoding's shapes (the same bits), low-rank pair included.
 */
class GemmFewRowsTest extends CpuBackendTests {
    @Test
    void productsMatchDoublePrecisionSums() {
        SplittableRandom r = new SplittableRandom(11);
        int checked = 0;
        for (DType storage : new DType[]{DType.F32, DType.BF16})
            for (int m : new int[]{1, 2, 3, 4, 5, 17, 64})
                for (int n : new int[]{1, 3, 4, 5, 13, 207})
                    for (int k : new int[]{1, 2, 7, 8, 9, 16, 18, 206, 207, 4098}) {
                        if (storage == DType.BF16 && k % 2 == 1) continue; // BF16 rows pair up two values an int
                        for (boolean transA : new boolean[]{false, true})
                            for (boolean overwrite : new boolean[]{true, false}) {
                                // activations in F32, or BF16 as mixed precision keeps them
                                check(r, storage, overwrite ? DType.F32 : DType.BF16, m, n, k, transA, overwrite);
                                checked++;
                            }
                    }
        assertTrue(checked > 700, "cases: " + checked);
    }

    private static void check(SplittableRandom r, DType storage, DType activations, int m, int n, int k, boolean transA, boolean overwrite) {
        double[] xv = random(r, m * k), wv = random(r, n * k), cv = random(r, m * n);
        try (Tensor x = be.upload(activations, transA ? Shape.of(k, m) : Shape.of(m, k), xv);
             Tensor w = be.upload(storage, Shape.of(n, k), wv);
             Tensor c = be.upload(DType.F32, Shape.of(m, n), cv)) {
            be.freeze(w);
            CpuBackend cpu = (CpuBackend) be;
            Matrix a = new Matrix(cpu.seg(x), cpu.codec(x), 0, transA ? k : m, transA ? m : k, transA);
            Matrix b = new Matrix(cpu.seg(w), cpu.codec(w), 0, n, k, true, cpu.panels(w));
            assertTrue(GemmFewRows.takes(Math.min(m, GemmFewRows.DECODING_ROWS), n, k, b));
            float alpha = 0.75f;
            GemmFewRows.multiply(m, n, k, alpha, a, b, cpu.seg(c), overwrite);
            double[] xs = be.download(x), ws = be.download(w), got = be.download(c);
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++) {
                    double sum = 0, mag = 0;
                    for (int p = 0; p < k; p++) {
                        double xp = transA ? xs[p * m + i] : xs[i * k + p];
                        sum += xp * ws[j * k + p];
                        mag += Math.abs(xp * ws[j * k + p]);
                    }
                    double want = alpha * sum + (overwrite ? 0 : (float) cv[i * n + j]);
                    assertEquals(want, got[i * n + j], 1e-5 * mag + 1e-6 * Math.abs(want) + 1e-30,
                            storage + " W, " + activations + " X, " + m + "x" + n + "x" + k + " transA=" + transA + " overwrite=" + overwrite + " at " + i + "," + j);
                }
        }
    }

    /**
     * An NF4 W (QLoRA's base weights) read as its codes: against double sums of the dequantized values, rows of one and
     * of several blocks, 1 to 64 rows of X, n not a multiple of 4; and the backend's GEMM takes decoding's products here.
     */
    @Test
    void nf4WeightsMatchTheirDequantizedValues() {
        SplittableRandom r = new SplittableRandom(23);
        CpuBackend cpu = (CpuBackend) be;
        for (int m : new int[]{1, 2, 3, 4, 5, 64})
            for (int n : new int[]{1, 3, 4, 13})
                for (int k : new int[]{64, 128, 320}) {
                    float[] wv = new float[n * k];
                    for (int i = 0; i < wv.length; i++) wv[i] = (float) (r.nextGaussian() * (1 + i / k));
                    Nf4Weight q = Nf4.quantize(wv, (m + n) % 2 == 0);
                    double[] xv = random(r, m * k), cv = random(r, m * n);
                    try (Tensor w = be.uploadNf4(Shape.of(n, k), MemorySegment.ofArray(q.packed()), q.scales());
                         Tensor x = be.upload(DType.F32, Shape.of(m, k), xv);
                         Tensor c = be.upload(DType.F32, Shape.of(m, n), cv);
                         Tensor viaGemm = be.allocate(DType.F32, m, n)) {
                        be.freeze(w);
                        Matrix b = new Matrix(cpu.seg(w), cpu.codec(w), 0, n, k, true, cpu.panels(w));
                        // vectors of 8 or 16 floats only (one or two table vectors); 128-bit machines pack NF4 W as before
                        int lanes = jdk.incubator.vector.FloatVector.SPECIES_PREFERRED.length();
                        assertEquals(lanes == 8 || lanes == 16, GemmFewRows.takes(Math.min(m, GemmFewRows.DECODING_ROWS), n, k, b), "NF4 " + n + "x" + k);
                        assertEquals(lanes == 8 || lanes == 16, GemmFewRows.takes(GemmFewRows.NF4_ROWS, n, k, b));
                        assertFalse(GemmFewRows.takes(GemmFewRows.NF4_ROWS + 1, n, k, b), "NF4 past " + GemmFewRows.NF4_ROWS + " rows: packed");
                        if (lanes != 8 && lanes != 16) continue;
                        boolean overwrite = m % 2 == 1;
                        GemmFewRows.multiply(m, n, k, 0.75f, new Matrix(cpu.seg(x), cpu.codec(x), 0, m, k, false), b, cpu.seg(c), overwrite);
                        double[] ws = be.download(w), got = be.download(c);
                        for (int i = 0; i < m; i++)
                            for (int j = 0; j < n; j++) {
                                double sum = 0, mag = 0;
                                for (int p = 0; p < k; p++) {
                                    sum += xv[i * k + p] * ws[j * k + p];
                                    mag += Math.abs(xv[i * k + p] * ws[j * k + p]);
                                }
                                double want = 0.75 * sum + (overwrite ? 0 : (float) cv[i * n + j]);
                                assertEquals(want, got[i * n + j], 1e-5 * mag + 1e-6 * Math.abs(want) + 1e-30,
                                        "NF4 W " + m + "x" + n + "x" + k + " at " + i + "," + j);
                            }
                        if (m <= GemmFewRows.DECODING_ROWS) {
                            be.kernels().gemm(false, true, 0.75, x, w, 0.0, viaGemm);
                            try (Tensor direct = be.allocate(DType.F32, m, n)) {
                                GemmFewRows.multiply(m, n, k, 0.75f, new Matrix(cpu.seg(x), cpu.codec(x), 0, m, k, false), b, cpu.seg(direct), true);
                                assertArrayEquals(be.download(direct), be.download(viaGemm), 0.0, "NF4 through the backend's GEMM, m=" + m);
                            }
                        }
                    }
                }
    }

    /** Decoding's products take this path through the backend: the same bits as calling it, a low-rank pair added after. */
    @Test
    void theBackendsGemmTakesDecodingProducts() {
        SplittableRandom r = new SplittableRandom(5);
        for (DType storage : new DType[]{DType.F32, DType.BF16})
            for (int m = 1; m <= GemmFewRows.DECODING_ROWS; m++) {
                int n = 37, k = 130, rank = 4;
                try (Tensor x = be.upload(DType.F32, Shape.of(m, k), random(r, m * k));
                     Tensor w = be.upload(storage, Shape.of(n, k), random(r, n * k));
                     Tensor l = be.upload(DType.F32, Shape.of(m, rank), random(r, m * rank));
                     Tensor rt = be.upload(DType.F32, Shape.of(n, rank), random(r, n * rank));
                     Tensor c = be.allocate(DType.F32, m, n);
                     Tensor direct = be.allocate(DType.F32, m, n);
                     Tensor low = be.allocate(DType.F32, m, n)) {
                    be.freeze(w);
                    CpuBackend cpu = (CpuBackend) be;
                    be.kernels().gemm(false, true, 0.5, x, w, 0.0, c);
                    GemmFewRows.multiply(m, n, k, 0.5f, new Matrix(cpu.seg(x), cpu.codec(x), 0, m, k, false),
                            new Matrix(cpu.seg(w), cpu.codec(w), 0, n, k, true, cpu.panels(w)), cpu.seg(direct), true);
                    assertArrayEquals(be.download(direct), be.download(c), 0.0, storage + " m=" + m);
                    // C = 0.5 X W^T + 1.5 L R^T: the base product as above, then the pair's
                    be.kernels().gemmPlusLowRank(false, true, 0.5, x, w, 1.5, l, rt, 0.0, c);
                    be.kernels().gemm(false, true, 1.5, l, rt, 0.0, low);
                    double[] base = be.download(direct), pair = be.download(low), both = be.download(c);
                    for (int i = 0; i < base.length; i++) assertEquals(base[i] + pair[i], both[i], 1e-5, storage + " m=" + m + " with a pair");
                }
            }
    }

    /** Not for a W that is not frozen, stored untransposed, of another type, or a BF16 W with an odd k. */
    @Test
    void takesOnlyFrozenTransposedF32OrBf16Weights() {
        try (Tensor w = be.upload(DType.F32, Shape.of(8, 6), new double[48]);
             Tensor odd = be.upload(DType.BF16, Shape.of(8, 7), new double[56]);
             Tensor f16 = be.upload(DType.F16, Shape.of(8, 6), new double[48])) {
            CpuBackend cpu = (CpuBackend) be;
            assertFalse(GemmFewRows.takes(1, 8, 6, new Matrix(cpu.seg(w), cpu.codec(w), 0, 8, 6, true)), "not frozen");
            be.freeze(w);
            be.freeze(odd);
            be.freeze(f16);
            assertTrue(GemmFewRows.takes(1, 8, 6, new Matrix(cpu.seg(w), cpu.codec(w), 0, 8, 6, true, cpu.panels(w))));
            assertFalse(GemmFewRows.takes(1, 6, 8, new Matrix(cpu.seg(w), cpu.codec(w), 0, 8, 6, false, cpu.panels(w))), "untransposed");
            assertFalse(GemmFewRows.takes(1, 8, 7, new Matrix(cpu.seg(odd), cpu.codec(odd), 0, 8, 7, true, cpu.panels(odd))), "BF16, odd k");
            assertFalse(GemmFewRows.takes(1, 8, 6, new Matrix(cpu.seg(f16), cpu.codec(f16), 0, 8, 6, true, cpu.panels(f16))), "F16");
            try (Tensor nf4 = be.uploadNf4(Shape.of(2, 96), MemorySegment.ofArray(new byte[96]), new float[3])) {
                be.freeze(nf4);
                assertFalse(GemmFewRows.takes(1, 2, 96, new Matrix(cpu.seg(nf4), cpu.codec(nf4), 0, 2, 96, true, cpu.panels(nf4))),
                        "NF4 rows that are not whole blocks");
            }
            assertFalse(GemmFewRows.takes(GemmFewRows.UNKEPT_ROWS + 1, 8, 6, new Matrix(cpu.seg(w), cpu.codec(w), 0, 8, 6, true, cpu.panels(w))));
            // 5 to 64 rows only where the panels are not kept: here they fit the budget, unless it is 0 (the pom's
            // no-panel-cache run); the answer is the tensor's for its life
            Matrix kept = new Matrix(cpu.seg(w), cpu.codec(w), 0, 8, 6, true, cpu.panels(w));
            assertEquals(PanelCache.LIMIT == 0, GemmFewRows.takes(5, 8, 6, kept));
            assertEquals(PanelCache.LIMIT == 0, GemmFewRows.takes(GemmFewRows.UNKEPT_ROWS, 8, 6, kept));
        }
    }
}
