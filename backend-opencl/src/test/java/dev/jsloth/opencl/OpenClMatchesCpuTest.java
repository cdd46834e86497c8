package dev.jsloth.opencl;

import dev.jsloth.api.AttentionDims;
import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.quant.Nf4;
import dev.jsloth.api.quant.Nf4Weight;
import dev.jsloth.api.spi.Availability;
import dev.jsloth.api.spi.Backends;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.lang.foreign.MemorySegment;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.function.BiConsumer;
import java.util.function.Function;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The OpenCL backend against the CPU reference on what the conformance suite does not reach: Llama-sized head
 * dimensions (every attention bucket) and sequences spanning several tiles, large vocabularies and rows, F16 and
 * NF4 GEMM operands with 16-bit outputs, mixed storage types, and bitwise run-to-run determinism.
 */
class OpenClMatchesCpuTest {
    private static Backend cl;
    private static Backend cpu;
    /** Where {@code cl} multiplies with gemm_wgmma (compute capability 9.0): a second backend on gemm_mma; else null. */
    private static Backend clMma;

    @BeforeAll
    static void backends() {
        Availability a = new OpenClBackendProvider().availability();
        assumeTrue(a.available(), () -> "OpenCL unavailable: " + a.reason());
        cl = new OpenClBackendProvider().create();
        cpu = Backends.create("cpu");
        if (((OpenClBackend) cl).config().wgmma()) {
            System.setProperty(LaunchConfig.WGMMA_PROPERTY, "false");
            try {
                clMma = new OpenClBackendProvider().create();
            } finally {
                System.clearProperty(LaunchConfig.WGMMA_PROPERTY);
            }
        }
    }

    @AfterAll
    static void close() {
        if (cl != null) {
            assertEquals(0, cl.memoryStats().liveBytes(), "a test leaked OpenCL tensors: " + cl.memoryStats());
            cl.close();
        }
        if (cpu != null) cpu.close();
        if (clMma != null) clMma.close();
    }

    private static double[] random(SplittableRandom r, long n, double lo, double hi) {
        double[] v = new double[Math.toIntExact(n)];
        for (int i = 0; i < v.length; i++) v[i] = r.nextDouble(lo, hi);
        return v;
    }

    private static void close(String what, double[] want, double[] got, double tol) {
        assertEquals(want.length, got.length, what);
        double ref = 1, worst = 0;
        int at = 0;
        for (double w : want) ref = Math.max(ref, Math.abs(w));
        double maxRef = ref;
        for (int i = 0; i < want.length; i++) {
            double e = Math.abs(want[i] - got[i]);
            if (!(e <= worst)) {
                worst = Double.isNaN(e) ? Double.POSITIVE_INFINITY : e;
                at = i;
            }
        }
        double w = worst;
        int i = at;
        assertTrue(w <= tol * maxRef, () -> String.format(Locale.ROOT, "%s: element %d is %.9g, expected %.9g (err %.3e > %.1e x %.3g)",
                what, i, got[i], want[i], w, tol, maxRef));
    }

    private static double tol(DType t) {
        return t == DType.F64 ? 1e-10 : t == DType.F32 ? 5e-5 : t == DType.F16 ? 2e-3 : 2e-2;
    }

    /** Runs {@code op} on both backends with the same uploaded inputs and compares the named outputs. */
    private record Pair(Tensor cpu, Tensor cl) implements AutoCloseable {
        @Override
        public void close() {
            cpu.close();
            cl.close();
        }
    }

    private static Pair upload(DType dt, double[] v, int... dims) {
        return new Pair(cpu.upload(dt, Shape.of(dims), v), cl.upload(dt, Shape.of(dims), v));
    }

    private static Pair ints(int[] v, int... dims) {
        return new Pair(cpu.uploadInts(Shape.of(dims), v), cl.uploadInts(Shape.of(dims), v));
    }

    private static Pair zeros(DType dt, int... dims) {
        return new Pair(cpu.allocate(dt, dims), cl.allocate(dt, dims));
    }

    private static void compare(String what, Pair p, DType compute) {
        close(what, cpu.download(p.cpu()), cl.download(p.cl()), tol(compute));
    }

    @ParameterizedTest
    @CsvSource({"F32,64,70,8,2,false", "F32,128,40,4,4,true", "F32,256,33,2,1,false", "F64,64,37,4,2,true", "F64,100,20,3,1,false"})
    void attentionAtLlamaHeadDimensions(DType dt, int hd, int seq, int qHeads, int kvHeads, boolean packed) {
        SplittableRandom r = new SplittableRandom(hd * 31L + seq);
        int batch = 2;
        AttentionDims d = new AttentionDims(batch, seq, qHeads, kvHeads, hd);
        int[] seg = null;
        if (packed) {
            seg = new int[batch * seq];
            for (int b = 0; b < batch; b++) for (int t = 1; t < seq; t++) seg[b * seq + t] = seg[b * seq + t - 1] + (r.nextInt(9) == 0 ? 1 : 0);
        }
        try (Pair q = upload(dt, random(r, d.queryElements(), -2, 2), batch, seq, qHeads, hd);
             Pair k = upload(dt, random(r, d.kvElements(), -2, 2), batch, seq, kvHeads, hd);
             Pair v = upload(dt, random(r, d.kvElements(), -1, 1), batch, seq, kvHeads, hd);
             Pair dOut = upload(dt, random(r, d.queryElements(), -1, 1), batch, seq, qHeads, hd);
             Pair segs = seg == null ? null : ints(seg, batch, seq);
             Pair out = zeros(dt, batch, seq, qHeads, hd); Pair lse = zeros(dt, batch, qHeads, seq);
             Pair dq = zeros(dt, batch, seq, qHeads, hd); Pair dk = zeros(dt, batch, seq, kvHeads, hd);
             Pair dv = zeros(dt, batch, seq, kvHeads, hd)) {
            double scale = 1 / Math.sqrt(hd);
            cpu.kernels().attentionForward(d, q.cpu(), k.cpu(), v.cpu(), segs == null ? null : segs.cpu(), scale, out.cpu(), lse.cpu());
            cl.kernels().attentionForward(d, q.cl(), k.cl(), v.cl(), segs == null ? null : segs.cl(), scale, out.cl(), lse.cl());
            compare("attention out", out, dt);
            compare("attention lse", lse, dt);
            cpu.kernels().attentionBackward(d, dOut.cpu(), q.cpu(), k.cpu(), v.cpu(), segs == null ? null : segs.cpu(), scale,
                    out.cpu(), lse.cpu(), dq.cpu(), dk.cpu(), dv.cpu());
            cl.kernels().attentionBackward(d, dOut.cl(), q.cl(), k.cl(), v.cl(), segs == null ? null : segs.cl(), scale,
                    out.cl(), lse.cl(), dq.cl(), dk.cl(), dv.cl());
            compare("attention dq", dq, dt);
            compare("attention dk", dk, dt);
            compare("attention dv", dv, dt);
        }
    }

    /**
     * flash_attention.cl (16-bit attention on an NVIDIA GPU's tensor cores) against the CPU reference: one query, a
     * sequence shorter than a tile, several tiles with ragged ends, MHA and GQA, packed sequences, cached keys (forward
     * only: kvSeq > seq), bf16 and f16, head dimensions 64 and 128 (dK/dV there with K and V held in registers); and
     * the same bits on a second run. Runs only where the backend uses it; elsewhere skipped with the reason.
     */
    @ParameterizedTest
    @CsvSource({"BF16,64,1,1,4,4,false", "BF16,64,13,13,8,2,true", "BF16,64,207,207,4,1,false", "F16,64,300,300,4,2,true",
            "BF16,64,130,130,32,4,false", "BF16,64,3,75,8,2,false", "BF16,128,200,200,4,2,true", "F16,128,70,70,2,2,false",
            "BF16,128,5,130,4,1,false"})
    void tensorCoreAttentionOnAwkwardShapes(DType dt, int hd, int seq, int kvSeq, int qHeads, int kvHeads, boolean packed) {
        LaunchConfig cfg = ((OpenClBackend) cl).config();
        assumeTrue(cfg.tensorCores(), () -> "this OpenCL device does not run flash_attention.cl (an NVIDIA GPU of compute "
                + "capability 8.0+ does): " + ((OpenClBackend) cl).description());
        SplittableRandom r = new SplittableRandom(hd * 131L + seq * 7L + kvSeq);
        int batch = 2;
        AttentionDims d = new AttentionDims(batch, seq, qHeads, kvHeads, hd, kvSeq);
        int[] seg = null;
        if (packed) {
            seg = new int[batch * seq];
            for (int b = 0; b < batch; b++) for (int t = 1; t < seq; t++) seg[b * seq + t] = seg[b * seq + t - 1] + (r.nextInt(40) == 0 ? 1 : 0);
        }
        try (Pair q = upload(dt, random(r, d.queryElements(), -2, 2), batch, seq, qHeads, hd);
             Pair k = upload(dt, random(r, d.kvElements(), -2, 2), batch, kvSeq, kvHeads, hd);
             Pair v = upload(dt, random(r, d.kvElements(), -1, 1), batch, kvSeq, kvHeads, hd);
             Pair segs = seg == null ? null : ints(seg, batch, seq);
             Pair out = zeros(dt, batch, seq, qHeads, hd); Pair lse = zeros(DType.F32, batch, qHeads, seq)) {
            double scale = 1 / Math.sqrt(hd);
            String what = "flash " + dt + " D=" + hd + " seq=" + seq + " kvSeq=" + kvSeq + " heads " + qHeads + "/" + kvHeads + ": ";
            cpu.kernels().attentionForward(d, q.cpu(), k.cpu(), v.cpu(), segs == null ? null : segs.cpu(), scale, out.cpu(), lse.cpu());
            cl.kernels().attentionForward(d, q.cl(), k.cl(), v.cl(), segs == null ? null : segs.cl(), scale, out.cl(), lse.cl());
            compare(what + "out", out, dt);
            compare(what + "lse", lse, dt);
            double[] first = cl.download(out.cl());
            cl.kernels().attentionForward(d, q.cl(), k.cl(), v.cl(), segs == null ? null : segs.cl(), scale, out.cl(), lse.cl());
            assertArrayEquals(first, cl.download(out.cl()), 0.0, what + "out differs between two runs");
            if (kvSeq != seq) return; // the backward pass is for training (no cached keys)
            try (Pair dOut = upload(dt, random(r, d.queryElements(), -1, 1), batch, seq, qHeads, hd);
                 Pair dq = zeros(dt, batch, seq, qHeads, hd); Pair dk = zeros(dt, batch, seq, kvHeads, hd);
                 Pair dv = zeros(dt, batch, seq, kvHeads, hd)) {
                cpu.kernels().attentionBackward(d, dOut.cpu(), q.cpu(), k.cpu(), v.cpu(), segs == null ? null : segs.cpu(), scale,
                        out.cpu(), lse.cpu(), dq.cpu(), dk.cpu(), dv.cpu());
                for (int run = 0; run < 2; run++) {
                    double[] dkFirst = run == 0 ? null : cl.download(dk.cl());
                    cl.kernels().attentionBackward(d, dOut.cl(), q.cl(), k.cl(), v.cl(), segs == null ? null : segs.cl(), scale,
                            out.cl(), lse.cl(), dq.cl(), dk.cl(), dv.cl());
                    if (dkFirst != null) assertArrayEquals(dkFirst, cl.download(dk.cl()), 0.0, what + "dk differs between two runs");
                }
                compare(what + "dq", dq, dt);
                compare(what + "dk", dk, dt);
                compare(what + "dv", dv, dt);
            }
        }
    }

    @Test
    void attentionDecodingWithAKvCacheAtHeadDim128() {
        SplittableRandom r = new SplittableRandom(7);
        AttentionDims d = new AttentionDims(1, 3, 8, 2, 128, 75);
        try (Pair q = upload(DType.F32, random(r, d.queryElements(), -2, 2), 1, 3, 8, 128);
             Pair k = upload(DType.F32, random(r, d.kvElements(), -2, 2), 1, 75, 2, 128);
             Pair v = upload(DType.F32, random(r, d.kvElements(), -1, 1), 1, 75, 2, 128);
             Pair out = zeros(DType.F32, 1, 3, 8, 128); Pair lse = zeros(DType.F32, 1, 8, 3)) {
            cpu.kernels().attentionForward(d, q.cpu(), k.cpu(), v.cpu(), null, 0.088, out.cpu(), lse.cpu());
            cl.kernels().attentionForward(d, q.cl(), k.cl(), v.cl(), null, 0.088, out.cl(), lse.cl());
            compare("decode out", out, DType.F32);
            compare("decode lse", lse, DType.F32);
        }
    }

    @Test
    void attentionRejectsHeadDimensionsBeyondTheLargestBucket() {
        AttentionDims d = new AttentionDims(1, 1, 1, 1, 258);
        try (Tensor q = cl.allocate(DType.F32, 1, 1, 1, 258); Tensor lse = cl.allocate(DType.F32, 1, 1, 1)) {
            var e = assertThrows(UnsupportedOperationException.class, () -> cl.kernels().attentionForward(d, q, q, q, null, 1, q, lse));
            assertTrue(e.getMessage().contains("258"), e.getMessage());
        }
    }

    @ParameterizedTest
    @CsvSource({"F16,F16,F32,false,true", "F32,F16,BF16,true,false", "BF16,F32,F16,false,false", "F32,F32,F32,true,true",
            // a bf16 weight under F32 activations (a training step with 16-bit storage): copied/transposed to F32 on CPU devices
            "F32,BF16,F32,false,true", "F32,BF16,F32,false,false", "BF16,BF16,F32,true,true", "F16,F32,F32,true,false"})
    void gemmWithSixteenBitOperandsAndOutputs(DType ta, DType tb, DType tc, boolean transA, boolean transB) {
        SplittableRandom r = new SplittableRandom(11);
        int m = 130, n = 97, k = 300;
        try (Pair a = upload(ta, random(r, (long) m * k, -1, 1), transA ? k : m, transA ? m : k);
             Pair b = upload(tb, random(r, (long) k * n, -1, 1), transB ? n : k, transB ? k : n);
             Pair c = upload(tc, random(r, (long) m * n, -1, 1), m, n)) {
            cpu.kernels().gemm(transA, transB, 0.5, a.cpu(), b.cpu(), 0.25, c.cpu());
            cl.kernels().gemm(transA, transB, 0.5, a.cl(), b.cl(), 0.25, c.cl());
            compare("gemm " + ta + "x" + tb + "->" + tc, c, tc);
        }
    }

    /**
     * LoRA's F32 rank-r operands beside bf16 ones (the adapter's path in F32): on the tensor cores as hi/mid/lo bf16
     * parts (OpenClKernels.lowRankSplit; on PoCL with -Djsloth.opencl.lowRankSplit=true), elsewhere on the generic kernels.
     * F32 C within 1e-5 of max|C| (a bf16-rounded operand would be off by ~4e-3), a bf16 C from two F32 operands over a
     * rank-deep K within 1e-2 (one bf16 rounding at |C| near 2); every transposition, ranks 1, 16, 64, 1024 (the largest
     * split) and 1025.
     */
    @Test
    void lowRankGemmsMatchTheCpu() {
        SplittableRandom r = new SplittableRandom(23);
        for (int rank : new int[]{1, 16, 64, 1024, 1025})
            for (int tr = 0; tr < 4; tr++) {
                boolean transA = (tr & 1) != 0, transB = (tr & 2) != 0;
                double beta = tr == 1 || tr == 2 ? 1 : 0; // each transA with beta 0 (C NaN, ignored) and with beta 1
                lowRankCase(r, 207, rank, 300, transA, transB, DType.BF16, DType.F32, DType.F32, beta, 1e-5);
                lowRankCase(r, rank, 207, 300, transA, transB, DType.F32, DType.BF16, DType.F32, beta, 1e-5);
                lowRankCase(r, 131, 97, rank, transA, transB, DType.F32, DType.F32, DType.BF16, beta, 1e-2);
            }
    }

    private static void lowRankCase(SplittableRandom r, int m, int n, int k, boolean transA, boolean transB, DType ta, DType tb, DType tc,
                                    double beta, double tol) {
        try (Pair a = upload(ta, random(r, (long) m * k, -1, 1), transA ? k : m, transA ? m : k);
             Pair b = upload(tb, random(r, (long) k * n, -1, 1), transB ? n : k, transB ? k : n);
             Pair c = upload(tc, random(r, (long) m * n, -1, 1), m, n)) {
            if (beta == 0) cl.kernels().fill(c.cl(), Double.NaN);
            cpu.kernels().gemm(transA, transB, 0.75, a.cpu(), b.cpu(), beta, c.cpu());
            cl.kernels().gemm(transA, transB, 0.75, a.cl(), b.cl(), beta, c.cl());
            close(String.format(Locale.ROOT, "gemm %dx%dx%d ta=%b tb=%b %s x %s -> %s beta %s", m, n, k, transA, transB, ta, tb, tc, beta),
                    cpu.download(c.cpu()), cl.download(c.cl()), tol);
        }
    }

    /**
     * gemm_mma.cl and, on compute capability 9.0, gemm_wgmma.cl (BF16 operands on an NVIDIA GPU's tensor cores, inline
     * PTX mma.sync / wgmma) against the CPU reference on
     * awkward shapes: single elements, edges of every size, each transpose, batches, F32 and BF16 C with alpha and beta,
     * products whose K is split into ranges.
     * Runs only where the backend uses it; elsewhere skipped with the reason.
     */
    @ParameterizedTest
    // 16x2048x8192, 2048x16x1000 and 40x24x700 split K (few C tiles, long K: LoRA's rank-16 gradient shape, a ragged
    // last range, a batch of splits); the last rows write C with beta = 0: whole BF16 tiles go through local memory
    // (a LoRA expansion at K = 16, a batch), edge tiles by element pairs, then a split-K sum without C
    @CsvSource({"1,1,1,false,false,1,F32,0.25", "13,207,33,false,true,1,F32,0.25", "130,97,300,true,false,1,BF16,0.25",
            "257,129,70,true,true,1,F32,0.25", "128,128,32,false,false,3,F32,0.25",
            "200,300,517,false,true,2,BF16,0.25", "64,1000,96,false,false,1,F32,0.25",
            "1000,64,16,true,true,1,BF16,0.25", "16,2048,8192,true,false,1,F32,0.25",
            "2048,16,1000,true,false,1,BF16,0.25", "40,24,700,false,true,2,F32,0.25", "256,384,16,false,true,1,BF16,0",
            "200,136,40,false,false,1,BF16,0", "128,128,64,true,false,2,BF16,0", "128,256,2000,false,true,1,BF16,0",
            "300,260,1000,false,false,1,F32,0.25", "384,256,2048,true,true,1,BF16,0"})
    void tensorCoreGemmOnAwkwardShapes(int m, int n, int k, boolean transA, boolean transB, int batch, DType tc, double beta) {
        LaunchConfig cfg = ((OpenClBackend) cl).config();
        assumeTrue(cfg.tensorCores(), () -> "this OpenCL device does not run gemm_mma.cl (an NVIDIA GPU of compute "
                + "capability 8.0+ does): " + ((OpenClBackend) cl).description());
        SplittableRandom r = new SplittableRandom(m * 31L + n * 7L + k);
        int[] aDims = batch == 1 ? new int[]{transA ? k : m, transA ? m : k} : new int[]{batch, transA ? k : m, transA ? m : k};
        int[] bDims = batch == 1 ? new int[]{transB ? n : k, transB ? k : n} : new int[]{batch, transB ? n : k, transB ? k : n};
        int[] cDims = batch == 1 ? new int[]{m, n} : new int[]{batch, m, n};
        double[] av = random(r, (long) batch * m * k, -1, 1), bv = random(r, (long) batch * k * n, -1, 1);
        double[] cv = random(r, (long) batch * m * n, -1, 1);
        double[] expected = product(cpu, transA, transB, beta, tc, av, aDims, bv, bDims, cv, cDims);
        String what = m + "x" + n + "x" + k + (transA ? " A^T" : "") + (transB ? " B^T" : "") + " x" + batch;
        // the products of bf16 values are exact in fp32; only the summation order differs from the reference
        close((cfg.wgmma() ? "gemm_wgmma " : "gemm_mma ") + what, expected,
                product(cl, transA, transB, beta, tc, av, aDims, bv, bDims, cv, cDims), tol(tc));
        if (clMma != null)
            close("gemm_mma " + what, expected, product(clMma, transA, transB, beta, tc, av, aDims, bv, bDims, cv, cDims), tol(tc));
    }

    /**
     * Narrow products (N or M at most 16: LoRA's X A^T, dY B, dB = dY^T (XA), dA = (dY B)^T X) against the CPU reference:
     * on Hopper they run on gemm_wgmma_narrow (B copied K-major where stored [K][N]; M <= 16 computed as C^T; split K),
     * elsewhere on the 128 x 128 kernels. Edges of every size, N and M of 1, both at most 16, beta 0 / 1.
     */
    @ParameterizedTest
    @CsvSource({"1000,16,700,false,true,BF16,0", "777,13,300,false,false,BF16,0.25", "16,1000,3000,true,false,F32,1",
            "1000,16,3000,true,false,F32,1", "1,16,33,false,true,F32,0", "64,1,64,false,false,BF16,0",
            "16,16,100,true,true,F32,0.25", "5,300,70,false,true,F32,0", "130,7,2000,true,true,BF16,1",
            "8192,16,2048,false,true,BF16,0"})
    void narrowTensorCoreGemm(int m, int n, int k, boolean transA, boolean transB, DType tc, double beta) {
        tensorCoreGemmOnAwkwardShapes(m, n, k, transA, transB, 1, tc, beta);
    }

    /**
     * The fused product plus low-rank product (LoRA's Y = X W^T + s (XA) B^T and dX = dY W + s (dY B) A) on the tensor-core
     * kernels against the CPU reference's two products: ranks of one slice, a partial one and two, split K (the pair
     * only in the first range), both transposes, F32 and BF16 C, beta 0 / 1 / 0.25, whole and edge tiles.
     */
    @ParameterizedTest
    @CsvSource({"1,1,1,1,false,true,F32,0.25", "13,207,33,16,false,true,BF16,0", "130,97,300,16,false,false,F32,1",
            "300,256,2048,16,false,true,BF16,0", "257,129,70,40,true,true,F32,0.25", "200,136,40,33,true,false,BF16,1",
            "128,128,64,16,false,false,BF16,0", "64,300,1500,8,false,false,F32,0"})
    void tensorCoreGemmPlusLowRankOnAwkwardShapes(int m, int n, int k, int rank, boolean transA, boolean transB, DType tc, double beta) {
        LaunchConfig cfg = ((OpenClBackend) cl).config();
        assumeTrue(cfg.tensorCores(), () -> "this OpenCL device does not run gemm_mma.cl (an NVIDIA GPU of compute "
                + "capability 8.0+ does): " + ((OpenClBackend) cl).description());
        SplittableRandom r = new SplittableRandom(m * 31L + n * 7L + k + rank);
        int[] aDims = {transA ? k : m, transA ? m : k}, bDims = {transB ? n : k, transB ? k : n};
        int[] lDims = {transA ? rank : m, transA ? m : rank}, rDims = {transB ? n : rank, transB ? rank : n};
        double[] av = random(r, (long) m * k, -1, 1), bv = random(r, (long) k * n, -1, 1), lv = random(r, (long) m * rank, -1, 1);
        double[] rv = random(r, (long) rank * n, -1, 1), cv = random(r, (long) m * n, -1, 1);
        double[] expected = productPlusLowRank(cpu, transA, transB, beta, tc, av, aDims, bv, bDims, lv, lDims, rv, rDims, cv);
        String what = m + "x" + n + "x" + k + " + rank " + rank + (transA ? " A^T" : "") + (transB ? " B^T" : "");
        close((cfg.wgmma() ? "gemm_wgmma " : "gemm_mma ") + what, expected,
                productPlusLowRank(cl, transA, transB, beta, tc, av, aDims, bv, bDims, lv, lDims, rv, rDims, cv), tol(tc));
        if (clMma != null)
            close("gemm_mma " + what, expected, productPlusLowRank(clMma, transA, transB, beta, tc, av, aDims, bv, bDims, lv, lDims, rv, rDims, cv), tol(tc));
    }

    private static double[] productPlusLowRank(Backend be, boolean transA, boolean transB, double beta, DType tc, double[] av,
                                               int[] aDims, double[] bv, int[] bDims, double[] lv, int[] lDims, double[] rv,
                                               int[] rDims, double[] cv) {
        try (Tensor a = be.upload(DType.BF16, Shape.of(aDims), av); Tensor b = be.upload(DType.BF16, Shape.of(bDims), bv);
             Tensor l = be.upload(DType.BF16, Shape.of(lDims), lv); Tensor rt = be.upload(DType.BF16, Shape.of(rDims), rv);
             Tensor c = be.upload(tc, Shape.of(aDims[transA ? 1 : 0], bDims[transB ? 0 : 1]), cv)) {
            be.kernels().gemmPlusLowRank(transA, transB, 1.0, a, b, 2.0, l, rt, beta, c);
            return be.download(c);
        }
    }

    /** C = 0.5 op(A) op(B) + beta C on one backend (batched where the dimensions say so), downloaded. */
    private static double[] product(Backend be, boolean transA, boolean transB, double beta, DType tc, double[] av, int[] aDims,
                                    double[] bv, int[] bDims, double[] cv, int[] cDims) {
        try (Tensor a = be.upload(DType.BF16, Shape.of(aDims), av); Tensor b = be.upload(DType.BF16, Shape.of(bDims), bv);
             Tensor c = be.upload(tc, Shape.of(cDims), cv)) {
            if (cDims.length == 2) be.kernels().gemm(transA, transB, 0.5, a, b, beta, c);
            else be.kernels().gemmBatched(transA, transB, 0.5, a, b, beta, c);
            return be.download(c);
        }
    }

    /** SwiGLU and add on BF16 tensors: 8 elements per work-item where the count is a multiple of 8, else one. */
    @ParameterizedTest
    @CsvSource({"8", "4104", "4099", "13"})
    void bf16ElementwiseEightWideAndNot(int n) {
        SplittableRandom r = new SplittableRandom(n);
        try (Pair gate = upload(DType.BF16, random(r, n, -6, 6), n); Pair up = upload(DType.BF16, random(r, n, -2, 2), n);
             Pair dOut = upload(DType.BF16, random(r, n, -1, 1), n); Pair out = zeros(DType.BF16, n);
             Pair dGate = zeros(DType.BF16, n); Pair dUp = zeros(DType.BF16, n); Pair sum = zeros(DType.BF16, n)) {
            cpu.kernels().swigluForward(gate.cpu(), up.cpu(), out.cpu());
            cl.kernels().swigluForward(gate.cl(), up.cl(), out.cl());
            compare("swiglu n=" + n, out, DType.BF16);
            cpu.kernels().swigluBackward(dOut.cpu(), gate.cpu(), up.cpu(), dGate.cpu(), dUp.cpu());
            cl.kernels().swigluBackward(dOut.cl(), gate.cl(), up.cl(), dGate.cl(), dUp.cl());
            compare("swiglu dGate n=" + n, dGate, DType.BF16);
            compare("swiglu dUp n=" + n, dUp, DType.BF16);
            cpu.kernels().add(gate.cpu(), up.cpu(), sum.cpu());
            cl.kernels().add(gate.cl(), up.cl(), sum.cl());
            compare("add n=" + n, sum, DType.BF16);
        }
    }

    /**
     * RMSNorm (forward, backward with the weight gradient; rstd F32, or BF16 as training keeps it) and RoPE (both
     * directions) on BF16 rows: 8 values per access where the width (RoPE: half the head dimension) is a multiple of 8,
     * else the per-element kernels.
     */
    @ParameterizedTest
    @CsvSource({"16,1,F32", "104,2,F32", "4096,1,BF16", "12,3,F32", "128,4,BF16", "12,3,BF16"})
    void bf16NormAndRopeEightWideAndNot(int d, int heads, DType rstdType) {
        SplittableRandom r = new SplittableRandom(d * 7L + heads);
        int n = 5, half = d / heads / 2;
        try (Pair x = upload(DType.BF16, random(r, (long) n * d, -2, 2), n, d); Pair w = upload(DType.BF16, random(r, d, 0.5, 1.5), d);
             Pair y = zeros(DType.BF16, n, d); Pair rstd = zeros(rstdType, n); Pair dy = upload(DType.BF16, random(r, (long) n * d, -1, 1), n, d);
             Pair dx = zeros(DType.BF16, n, d); Pair dw = zeros(DType.F32, d);
             Pair cos = upload(DType.F32, random(r, (long) n * half, -1, 1), n, half);
             Pair sin = upload(DType.F32, random(r, (long) n * half, -1, 1), n, half)) {
            cpu.kernels().rmsNormForward(x.cpu(), w.cpu(), 1e-5, y.cpu(), rstd.cpu());
            cl.kernels().rmsNormForward(x.cl(), w.cl(), 1e-5, y.cl(), rstd.cl());
            compare("rmsnorm y d=" + d, y, DType.BF16);
            compare("rmsnorm rstd d=" + d, rstd, rstdType);
            cpu.kernels().rmsNormBackward(dy.cpu(), x.cpu(), w.cpu(), rstd.cpu(), dx.cpu(), dw.cpu());
            cl.kernels().rmsNormBackward(dy.cl(), x.cl(), w.cl(), rstd.cl(), dx.cl(), dw.cl());
            compare("rmsnorm dx d=" + d, dx, DType.BF16);
            compare("rmsnorm dw d=" + d, dw, DType.F32);
            for (boolean inverse : new boolean[]{false, true}) {
                cpu.kernels().rope(x.cpu(), cos.cpu(), sin.cpu(), heads, inverse);
                cl.kernels().rope(x.cl(), cos.cl(), sin.cl(), heads, inverse);
                compare("rope d=" + d + " heads=" + heads + (inverse ? " inverse" : ""), x, DType.BF16);
            }
        }
    }

    @Test
    void nf4GemmAndCopyAtLayerSize() {
        SplittableRandom r = new SplittableRandom(3);
        int out = 192, in = 320, n = 17;
        float[] w = new float[out * in];
        for (int i = 0; i < w.length; i++) w[i] = (float) (r.nextGaussian() * 0.02);
        Nf4Weight q = Nf4.quantize(w, true);
        try (Tensor wc = cpu.uploadNf4(Shape.of(out, in), MemorySegment.ofArray(q.packed()), q.blockScales());
             Tensor wl = cl.uploadNf4(Shape.of(out, in), MemorySegment.ofArray(q.packed()), q.blockScales());
             Pair x = upload(DType.BF16, random(r, (long) n * in, -1, 1), n, in); Pair y = zeros(DType.F32, n, out);
             Pair dense = zeros(DType.F16, out, in)) {
            assertArrayEquals(cpu.download(wc), cl.download(wl), 0.0);
            cpu.kernels().gemm(false, true, 1, x.cpu(), wc, 0, y.cpu());
            cl.kernels().gemm(false, true, 1, x.cl(), wl, 0, y.cl());
            compare("X W_nf4^T", y, DType.F32);
            cpu.kernels().copy(wc, dense.cpu());
            cl.kernels().copy(wl, dense.cl());
            close("NF4 -> F16 copy", cpu.download(dense.cpu()), cl.download(dense.cl()), 0.0);
        }
    }

    @Test
    void largeRowsAndVocabularies() {
        SplittableRandom r = new SplittableRandom(5);
        int n = 6, d = 4096, vocab = 32000;
        try (Pair x = upload(DType.F32, random(r, (long) n * d, -2, 2), n, d); Pair w = upload(DType.BF16, random(r, d, 0.5, 1.5), d);
             Pair y = zeros(DType.F32, n, d); Pair rstd = zeros(DType.F32, n); Pair dx = zeros(DType.F32, n, d);
             Pair dw = upload(DType.F32, random(r, d, -1, 1), d)) {
            cpu.kernels().rmsNormForward(x.cpu(), w.cpu(), 1e-5, y.cpu(), rstd.cpu());
            cl.kernels().rmsNormForward(x.cl(), w.cl(), 1e-5, y.cl(), rstd.cl());
            compare("rmsnorm y (BF16 weight)", y, DType.F32);
            cpu.kernels().rmsNormBackward(y.cpu(), x.cpu(), w.cpu(), rstd.cpu(), dx.cpu(), dw.cpu());
            cl.kernels().rmsNormBackward(y.cl(), x.cl(), w.cl(), rstd.cl(), dx.cl(), dw.cl());
            compare("rmsnorm dx", dx, DType.F32);
            compare("rmsnorm dw", dw, DType.F32);
        }
        int[] labels = {5, -100, 31999, 0, 17};
        try (Pair logits = upload(DType.BF16, random(r, 5L * vocab, -10, 10), 5, vocab); Pair lab = ints(labels, 5);
             Pair loss = zeros(DType.F32, 5); Pair lse = zeros(DType.F32, 5)) {
            cpu.kernels().crossEntropyForward(logits.cpu(), lab.cpu(), -100, loss.cpu(), lse.cpu());
            cl.kernels().crossEntropyForward(logits.cl(), lab.cl(), -100, loss.cl(), lse.cl());
            compare("CE loss", loss, DType.F32);
            compare("CE lse", lse, DType.F32);
            cpu.kernels().crossEntropyBackward(logits.cpu(), lab.cpu(), lse.cpu(), -100, 0.25, logits.cpu());
            cl.kernels().crossEntropyBackward(logits.cl(), lab.cl(), lse.cl(), -100, 0.25, logits.cl());
            compare("CE dlogits in place (BF16)", logits, DType.BF16);
        }
    }

    @Test
    void embeddingBackwardWithHeavilyRepeatedIds() {
        SplittableRandom r = new SplittableRandom(9);
        int vocab = 50, dim = 96, n = 3000;
        int[] ids = new int[n];
        for (int i = 0; i < n; i++) ids[i] = r.nextInt(4) == 0 ? 7 : r.nextInt(vocab);
        try (Pair id = ints(ids, n); Pair dOut = upload(DType.F32, random(r, (long) n * dim, -1, 1), n, dim);
             Pair table = upload(DType.F32, random(r, (long) vocab * dim, -1, 1), vocab, dim)) {
            cpu.kernels().embeddingBackward(dOut.cpu(), id.cpu(), table.cpu());
            cl.kernels().embeddingBackward(dOut.cl(), id.cl(), table.cl());
            compare("embedding backward", table, DType.F32);
        }
    }

    /** Runs {@code op} twice on fresh copies of the same inputs; the outputs must agree bit for bit. */
    private static void deterministic(String what, double[][] inputs, Function<Tensor[], Tensor[]> op) {
        double[][] first = null;
        for (int run = 0; run < 2; run++) {
            Tensor[] in = new Tensor[inputs.length];
            for (int i = 0; i < inputs.length; i++) in[i] = cl.upload(DType.F32, Shape.of(inputs[i].length), inputs[i]);
            Tensor[] out = op.apply(in);
            double[][] got = new double[out.length][];
            for (int i = 0; i < out.length; i++) got[i] = cl.download(out[i]);
            for (Tensor t : in) t.close();
            for (Tensor t : out) t.close();
            if (first == null) first = got;
            else for (int i = 0; i < got.length; i++) assertArrayEquals(first[i], got[i], 0.0, what + " output " + i + " differs between runs");
        }
    }

    @Test
    void resultsAreBitwiseReproducible() {
        SplittableRandom r = new SplittableRandom(13);
        int seq = 50, hq = 4, hkv = 2, hd = 64;
        AttentionDims d = new AttentionDims(1, seq, hq, hkv, hd);
        deterministic("attention", new double[][]{random(r, d.queryElements(), -2, 2), random(r, d.kvElements(), -2, 2),
                random(r, d.kvElements(), -1, 1), random(r, d.queryElements(), -1, 1)}, in -> {
            Tensor q = in[0].view(1, seq, hq, hd), k = in[1].view(1, seq, hkv, hd), v = in[2].view(1, seq, hkv, hd), dOut = in[3].view(1, seq, hq, hd);
            Tensor out = cl.allocate(DType.F32, 1, seq, hq, hd), lse = cl.allocate(DType.F32, 1, hq, seq);
            Tensor dq = cl.allocate(DType.F32, 1, seq, hq, hd), dk = cl.allocate(DType.F32, 1, seq, hkv, hd), dv = cl.allocate(DType.F32, 1, seq, hkv, hd);
            cl.kernels().attentionForward(d, q, k, v, null, 0.125, out, lse);
            cl.kernels().attentionBackward(d, dOut, q, k, v, null, 0.125, out, lse, dq, dk, dv);
            return new Tensor[]{out, lse, dq, dk, dv};
        });
        deterministic("gemm and reductions", new double[][]{random(r, 300 * 200, -1, 1), random(r, 200 * 100, -1, 1)}, in -> {
            Tensor c = cl.allocate(DType.F32, 300, 100), colSums = cl.allocate(DType.F32, 100);
            cl.kernels().gemm(false, false, 1, in[0].view(300, 200), in[1].view(200, 100), 0, c);
            cl.kernels().sumRows(c, colSums, false);
            Tensor ss = cl.upload(DType.F64, Shape.of(1), new double[]{cl.kernels().sumOfSquares(c)});
            return new Tensor[]{c, colSums, ss};
        });
    }

    @Test
    void rowViewsReadAndWriteAtTheirOffset() {
        SplittableRandom r = new SplittableRandom(17);
        BiConsumer<Backend, Tensor[]> op = (be, t) -> {
            Tensor x = t[0].rows(3, 4), out = t[1].rows(2, 4);
            be.kernels().swigluForward(x, x, out);
            be.kernels().addRowVector(out, t[0].rows(9, 1).view(12));
        };
        try (Pair x = upload(DType.F32, random(r, 10 * 12, -2, 2), 10, 12); Pair out = zeros(DType.F32, 8, 12)) {
            op.accept(cpu, new Tensor[]{x.cpu(), out.cpu()});
            op.accept(cl, new Tensor[]{x.cl(), out.cl()});
            compare("views", out, DType.F32);
        }
    }
}
