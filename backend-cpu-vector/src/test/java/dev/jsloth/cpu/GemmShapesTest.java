package dev.jsloth.cpu;

import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The F32 GEMM's paths on awkward sizes against a plain F64 loop: packed operands, A read in place (plain F32 A,
 * N of one panel), B streamed a block at a time (short M, B untransposed; K over several streamed blocks), their partial
 * panels and tiles, both transposes, non-F32 storage, and a B too large for L2, whose next panel the wide kernel reads ahead.
 */
class GemmShapesTest extends CpuBackendTests {
    @ParameterizedTest
    @CsvSource({
            "1,1,1", "13,207,1", "207,13,300", "4098,13,207", "4098,16,33", "13,4098,207", "24,4098,300", "25,33,600",
            "6,16,256", "7,17,257", "96,2048,16", "1,4098,1", "300,300,300",
            "97,40,1025", "30,33,2100", // K past one packed K block (1024)
            "100,300,100", "100,300,1030", // tiles a row panel at a time (short k, B's block up to 1 MB) and a B panel at a time, last panel 4 rows
            "40,16,2100", "40,16,4500", // A read in place (N of one panel), K in one block and past one (4096)
            "31,16,4500", "25,9,70", // N within one vector: 12-row panels in place, a last one of 7 rows and of 1 row too (12 high)
            "19,16,40", "20,16,300", // N within one panel, short k, and with B streamed (M <= 24)
            "48,300,70", "64,65,33", "33,64,40", "64,64,20", // mirrored transposed products (B transposed, M up to 64) and their edges
            "241,40,70", "241,40,40", "2050,33,65", "242,40,70", // blocks of 5-row panels (256-bit vectors; 241 x 40 short k: 6-row panels)
            "243,40,70", "244,40,70", // last blocks that start with 4-row panels (how many depends on the thread count's row blocks)
            "1201,40,70", "1201,40,40", // 6 (5-row) / 13 (12-row) row blocks, rounded up to a multiple of the thread count where that is lower; short k in 6-row blocks
            "481,40,70", "482,40,1030", "959,40,70", // 5-row blocks of 240 rows: just past two, with K past one block, and the last block short
            "16,300,300", "12,70,100", "13,300,300", // with 5-row panels: 4 x 4 rows, 4 x 3, 4 + 4 + 5 (K = 300: the last streamed block, 44 deep, on 6-row panels)
            "3,70,100", "7,70,100", "11,70,100", // padded 4-row panels: one, 4 + 4, 4 + 4 + 4
            "16,1100,600", "5,2100,257", // streamed blocks 256 + 256 + 88 deep, and 256 + 1 (a last block 1 deep); partial last panels (units of N: the thread count, or the 1024-column cap, sets how many)
            "40,1100,1100"}) // the next B panel read ahead (B's first K block 4.6 MB), split across threads, last panel 12 columns
    void everyPathMatchesTheF64Loop(int m, int n, int k) {
        SplittableRandom r = new SplittableRandom(m * 31L + n * 7L + k);
        for (boolean ta : new boolean[]{false, true}) {
            for (boolean tb : new boolean[]{false, true}) {
                for (DType storage : new DType[]{DType.F32, DType.BF16}) {
                    // beta 0.5 (C accumulated) with F32 storage, 0 (C overwritten, NaN ignored) with BF16
                    double beta = storage == DType.F32 ? 0.5 : 0;
                    double[] av = new double[m * k], bv = new double[k * n], cv = new double[m * n];
                    for (int i = 0; i < av.length; i++) av[i] = r.nextDouble(-1, 1);
                    for (int i = 0; i < bv.length; i++) bv[i] = r.nextDouble(-1, 1);
                    for (int i = 0; i < cv.length; i++) cv[i] = beta == 0 ? Double.NaN : r.nextDouble(-1, 1);
                    try (Tensor a = be.upload(storage, ta ? Shape.of(k, m) : Shape.of(m, k), av);
                         Tensor b = be.upload(storage, tb ? Shape.of(n, k) : Shape.of(k, n), bv);
                         Tensor c = be.upload(DType.F32, Shape.of(m, n), cv)) {
                        double[] as = be.download(a), bs = be.download(b), c0 = be.download(c);
                        be.kernels().gemm(ta, tb, 0.75, a, b, beta, c);
                        double worst = worstError(m, n, k, 0.75, as, ta, bs, tb, beta, c0, be.download(c));
                        assertTrue(worst < 2e-6, m + "x" + n + "x" + k + " transA=" + ta + " transB=" + tb + " " + storage + " beta=" + beta
                                + ": error " + worst);
                    }
                }
            }
        }
    }

    /**
     * A product large enough that A is packed first and the row blocks sweep B a column range and a K block at a time
     * ({@link GemmF32#prepacksA}): two K blocks (the second 76 deep), two sweeps (the second one panel wide, a partial one),
     * a last row block with a padded panel, against a plain F64 loop; both with A and B as stored and both transposed.
     * Rows: two row blocks a thread and one more, whatever the vector width and thread count. Then again with A packed
     * in several chunks of row blocks ({@link GemmF32#aAllFloats} lowered): bit for bit the same C.
     */
    @org.junit.jupiter.api.Test
    void productWithAPackedFirstMatchesTheF64Loop() {
        int m = 2 * Parallel.THREADS * GemmF32.MC + 7, n = (int) (GemmF32.SWEEP_BYTES / (4L * GemmF32.KC)) + 9, k = GemmF32.KC + 76;
        SplittableRandom r = new SplittableRandom(42);
        double[] av = random(r, m * k), bv = random(r, k * n), cv = random(r, m * n);
        for (boolean trans : new boolean[]{false, true}) {
            try (Tensor a = be.upload(DType.F32, trans ? Shape.of(k, m) : Shape.of(m, k), av);
                 Tensor b = be.upload(DType.F32, trans ? Shape.of(n, k) : Shape.of(k, n), bv);
                 Tensor c = be.upload(DType.F32, Shape.of(m, n), cv)) {
                CpuBackend cpu = (CpuBackend) be;
                Matrix ma = new Matrix(cpu.seg(a), cpu.codec(a), 0, trans ? k : m, trans ? m : k, trans);
                Matrix mb = new Matrix(cpu.seg(b), cpu.codec(b), 0, trans ? n : k, trans ? k : n, trans);
                assertTrue(GemmF32.prepacksA(m, n, k, ma, mb), m + "x" + n + "x" + k + " trans=" + trans + ": A not packed first");
                double[] as = be.download(a), bs = be.download(b);
                be.kernels().gemm(trans, trans, 0.75, a, b, 0.5, c);
                double[] got = be.download(c);
                double worst = worstError(m, n, k, 0.75, as, trans, bs, trans, 0.5, cv, got);
                assertTrue(worst < 2e-6, m + "x" + n + "x" + k + " trans=" + trans + ": error " + worst);
                // A packed in three chunks of row blocks, one after another: the same bits
                long floats = (long) (m + GemmMicrokernels.ROWS_MAX) * k;
                GemmF32.aAllFloats = floats / 3 + 1;
                try (Tensor c2 = be.upload(DType.F32, Shape.of(m, n), cv)) {
                    int chunks = GemmF32.prepackChunks(m, n, k, ma, mb);
                    assertTrue(chunks >= 2, m + "x" + n + "x" + k + " trans=" + trans + ": " + chunks + " chunk(s)");
                    be.kernels().gemm(trans, trans, 0.75, a, b, 0.5, c2);
                    double[] chunked = be.download(c2);
                    for (int i = 0; i < got.length; i++)
                        if (Double.doubleToRawLongBits(chunked[i]) != Double.doubleToRawLongBits(got[i]))
                            throw new AssertionError(chunks + " chunks, trans=" + trans + ": C[" + i / n + "][" + i % n + "] "
                                    + chunked[i] + " against " + got[i] + " in one chunk");
                } finally {
                    GemmF32.aAllFloats = GemmF32.A_ALL_FLOATS;
                }
            }
        }
    }

    /**
     * The largest error of {@code got} against {@code alpha op(A) op(B) + beta C0} summed in F64 (C0 ignored where beta is
     * 0, so that it may hold NaN), each scaled by {@code sqrt(k) + 1}.
     */
    private static double worstError(int m, int n, int k, double alpha, double[] as, boolean ta, double[] bs, boolean tb,
                                     double beta, double[] c0, double[] got) {
        double worst = 0;
        double[] row = new double[n];
        for (int i = 0; i < m; i++) {
            java.util.Arrays.fill(row, 0);
            for (int p = 0; p < k; p++) {
                double x = as[ta ? p * m + i : i * k + p];
                for (int j = 0; j < n; j++) row[j] += x * bs[tb ? j * k + p : p * n + j];
            }
            for (int j = 0; j < n; j++) {
                double want = alpha * row[j] + (beta == 0 ? 0 : beta * c0[i * n + j]);
                worst = Math.max(worst, Math.abs(got[i * n + j] - want) / (Math.sqrt(k) + 1));
            }
        }
        return worst;
    }

    /**
     * {@code gemmPlusLowRank} with the pair concatenated along K inside one product (A packed: N above one panel; B packed
     * whole or streamed, {@link GemmF32#streamsB}) and through the default's two products (a plain F32 A read in place),
     * against a plain F64 loop: ranks 1 to 600 (from 64 the pair's block runs on the sliced kernel), depths of one and
     * several k blocks, partial tiles, both transposes, F32 and BF16 storage, beta 0 (C ignored) and 0.5.
     */
    @ParameterizedTest
    @CsvSource({
            "25,17,1,1", "97,33,13,16", "207,130,300,40", "100,64,600,16", "25,4098,257,8", "50,40,20,64", "31,50,70,100",
            "13,207,300,16", "207,13,300,16", "1,33,17,4", "40,50,1030,16", "1201,40,20,16",
            "13,40,64,600"}) // a pair deeper than 8 K blocks' worth of the wide kernel's read-ahead: it reads elsewhere
    void lowRankPairMatchesTheF64Loop(int m, int n, int k, int rank) {
        SplittableRandom r = new SplittableRandom(m * 31L + n * 7L + k * 3L + rank);
        for (boolean ta : new boolean[]{false, true}) {
            for (boolean tb : new boolean[]{false, true}) {
                for (DType storage : new DType[]{DType.F32, DType.BF16}) {
                    for (double beta : new double[]{0, 0.5}) {
                        double[] av = random(r, m * k), bv = random(r, k * n), lv = random(r, m * rank), rv = random(r, rank * n);
                        double[] cv = random(r, m * n);
                        if (beta == 0) java.util.Arrays.fill(cv, Double.NaN); // beta = 0 must ignore C entirely
                        try (Tensor a = be.upload(storage, ta ? Shape.of(k, m) : Shape.of(m, k), av);
                             Tensor b = be.upload(storage, tb ? Shape.of(n, k) : Shape.of(k, n), bv);
                             Tensor l = be.upload(storage, ta ? Shape.of(rank, m) : Shape.of(m, rank), lv);
                             Tensor rt = be.upload(storage, tb ? Shape.of(n, rank) : Shape.of(rank, n), rv);
                             Tensor c = be.upload(DType.F32, Shape.of(m, n), cv)) {
                            CpuBackend cpu = (CpuBackend) be;
                            Matrix ma = new Matrix(cpu.seg(a), cpu.codec(a), 0, ta ? k : m, ta ? m : k, ta);
                            Matrix mb = new Matrix(cpu.seg(b), cpu.codec(b), 0, tb ? n : k, tb ? k : n, tb);
                            // a plain F32 A with N of one panel is read in place; then the pair goes through the default's
                            // two products
                            boolean inPlace = storage == DType.F32 && !ta && n <= GemmMicrokernels.NR;
                            boolean fused = GemmF32.fusesLowRank(m, n, k, rank, ma, mb);
                            assertTrue(fused == !inPlace, m + "x" + n + "x" + k + " r=" + rank + " " + storage + " ta=" + ta + " tb=" + tb
                                    + ": fused " + fused);
                            double[] as = be.download(a), bs = be.download(b), ls = be.download(l), rs = be.download(rt);
                            be.kernels().gemmPlusLowRank(ta, tb, 0.75, a, b, 2.0, l, rt, beta, c);
                            double[] got = be.download(c);
                            double worst = 0;
                            for (int i = 0; i < m; i++)
                                for (int j = 0; j < n; j++) {
                                    double s = 0, low = 0;
                                    for (int p = 0; p < k; p++) s += as[ta ? p * m + i : i * k + p] * bs[tb ? j * k + p : p * n + j];
                                    for (int p = 0; p < rank; p++) low += ls[ta ? p * m + i : i * rank + p] * rs[tb ? j * rank + p : p * n + j];
                                    double want = 0.75 * s + 2.0 * low + (beta == 0 ? 0 : beta * cv[i * n + j]);
                                    worst = Math.max(worst, Math.abs(got[i * n + j] - want) / (Math.sqrt(k + rank) + 1));
                                }
                            assertTrue(worst < 4e-6, m + "x" + n + "x" + k + " r=" + rank + " transA=" + ta + " transB=" + tb + " "
                                    + storage + " beta=" + beta + " (fused " + fused + "): error " + worst);
                        }
                    }
                }
            }
        }
    }
}
