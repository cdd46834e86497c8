package dev.jsloth.cpu;

import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The F32 GEMM's paths on awkward sizes against a plain F64 loop: packed operands, A read in place (plain F32 A,
 * N of one panel), B read in place (plain F32 B, short M), their partial panels and tiles, both transposes, and
 * non-F32 storage (packed whatever the shape).
 */
class GemmShapesTest {
    static Backend be;

    @BeforeAll
    static void start() {
        be = new CpuBackendProvider().create();
    }

    @AfterAll
    static void stop() {
        be.close();
    }

    @ParameterizedTest
    @CsvSource({
            "1,1,1", "13,207,1", "207,13,300", "4098,13,207", "4098,16,33", "13,4098,207", "24,4098,300", "25,33,600",
            "6,16,256", "7,17,257", "96,2048,16", "1,4098,1", "300,300,300"})
    void everyPathMatchesTheF64Loop(int m, int n, int k) {
        SplittableRandom r = new SplittableRandom(m * 31L + n * 7L + k);
        for (boolean ta : new boolean[]{false, true}) {
            for (boolean tb : new boolean[]{false, true}) {
                for (DType storage : new DType[]{DType.F32, DType.BF16}) {
                    double[] av = new double[m * k], bv = new double[k * n], cv = new double[m * n];
                    for (int i = 0; i < av.length; i++) av[i] = r.nextDouble(-1, 1);
                    for (int i = 0; i < bv.length; i++) bv[i] = r.nextDouble(-1, 1);
                    for (int i = 0; i < cv.length; i++) cv[i] = r.nextDouble(-1, 1);
                    try (Tensor a = be.upload(storage, ta ? Shape.of(k, m) : Shape.of(m, k), av);
                         Tensor b = be.upload(storage, tb ? Shape.of(n, k) : Shape.of(k, n), bv);
                         Tensor c = be.upload(DType.F32, Shape.of(m, n), cv)) {
                        double[] as = be.download(a), bs = be.download(b), c0 = be.download(c);
                        be.kernels().gemm(ta, tb, 0.75, a, b, 0.5, c);
                        double[] got = be.download(c);
                        double worst = 0;
                        for (int i = 0; i < m; i++)
                            for (int j = 0; j < n; j++) {
                                double s = 0;
                                for (int p = 0; p < k; p++)
                                    s += as[ta ? p * m + i : i * k + p] * bs[tb ? j * k + p : p * n + j];
                                double want = 0.75 * s + 0.5 * c0[i * n + j];
                                worst = Math.max(worst, Math.abs(got[i * n + j] - want) / (Math.sqrt(k) + 1));
                            }
                        assertTrue(worst < 2e-6, m + "x" + n + "x" + k + " transA=" + ta + " transB=" + tb + " " + storage + ": error " + worst);
                    }
                }
            }
        }
    }
}
