package dev.jsloth.cuda;

import dev.jsloth.api.AttentionDims;
import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Kernels;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.quant.Nf4;
import dev.jsloth.api.quant.Nf4Weight;
import dev.jsloth.api.spi.Availability;
import dev.jsloth.api.spi.BackendUnavailableException;
import dev.jsloth.cpu.CpuBackendProvider;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The CUDA backend beyond the conformance suite: availability (runs everywhere), and, on a machine with a usable
 * GPU, every kernel instantiation through NVRTC, mixed element types, large and tiled shapes, determinism,
 * memory accounting, errors and a few timings, each against the CPU backend. Without a GPU the GPU tests are
 * reported as skipped with the provider's reason.
 */
class CudaBackendTest {
    private static final Availability AVAILABILITY = new CudaBackendProvider().availability();
    private static CudaBackend gpu;
    private static Backend cpu;

    @BeforeAll
    static void open() {
        System.out.println("[cuda] " + (AVAILABILITY.available() ? "available: " : "unavailable: ") + AVAILABILITY.reason());
        if (AVAILABILITY.available()) {
            gpu = (CudaBackend) new CudaBackendProvider().create();
            cpu = new CpuBackendProvider().create();
        }
    }

    @AfterAll
    static void close() {
        if (gpu != null) gpu.close();
        if (cpu != null) cpu.close();
    }

    private static void assumeGpu() {
        Assumptions.assumeTrue(AVAILABILITY.available(), () -> "no usable CUDA device: " + AVAILABILITY.reason());
    }

    // ---------------------------------------------------------------- everywhere

    @Test
    void providerSaysWhetherItIsAvailableAndWhy() {
        CudaBackendProvider p = new CudaBackendProvider();
        assertEquals("cuda", p.name());
        assertEquals(100, p.priority());
        assertFalse(AVAILABILITY.reason() == null || AVAILABILITY.reason().isBlank(), "availability must give a reason");
        if (!AVAILABILITY.available()) {
            var e = assertThrows(BackendUnavailableException.class, p::create);
            assertTrue(e.getMessage().contains(AVAILABILITY.reason()), e.getMessage());
        }
    }

    // ---------------------------------------------------------------- helpers

    private static double[] random(SplittableRandom r, int n, double lo, double hi) {
        double[] v = new double[n];
        for (int i = 0; i < n; i++) v[i] = r.nextDouble(lo, hi);
        return v;
    }

    /** Uploads the same values to both backends. */
    private record Pair(Tensor g, Tensor c) implements AutoCloseable {
        static Pair of(DType dt, Shape s, double[] v) {
            return new Pair(gpu.upload(dt, s, v), cpu.upload(dt, s, v));
        }

        static Pair zeros(DType dt, Shape s) {
            return new Pair(gpu.allocate(dt, s), cpu.allocate(dt, s));
        }

        @Override
        public void close() {
            g.close();
            c.close();
        }
    }

    private static void close(String what, Tensor expectedCpu, Tensor actualGpu, double tol) {
        double[] e = cpu.download(expectedCpu), a = gpu.download(actualGpu);
        assertEquals(e.length, a.length, what);
        double maxRef = 0, worst = 0;
        int at = -1;
        for (double x : e) maxRef = Math.max(maxRef, Math.abs(x));
        for (int i = 0; i < e.length; i++) {
            double err = Math.abs(a[i] - e[i]);
            if (Double.isNaN(err)) err = Double.isNaN(a[i]) && Double.isNaN(e[i]) ? 0 : Double.POSITIVE_INFINITY;
            if (err > worst) {
                worst = err;
                at = i;
            }
        }
        double bound = tol * Math.max(1, maxRef);
        assertTrue(worst <= bound, String.format(Locale.ROOT, "%s: element %d is %.9g, cpu %.9g (|err| %.3e > %.3e)",
                what, at, at < 0 ? 0 : a[at], at < 0 ? 0 : e[at], worst, bound));
    }

    // ---------------------------------------------------------------- GPU: compilation

    @Test
    void everyKernelInstantiationCompilesWithNvrtcAndLoads() {
        assumeGpu();
        long t0 = System.nanoTime();
        int count = 0;
        for (KernelId k : KernelId.values()) {
            for (List<ElementType> types : k.instantiations()) {
                Kernel kernel = gpu.kernel(k, types.toArray(ElementType[]::new));
                assertEquals(k.nameExpression(types), kernel.name());
                count++;
            }
        }
        System.out.printf(Locale.ROOT, "[cuda] %d kernel instantiations compiled/loaded in %.1f s (cache %s)%n", count,
                (System.nanoTime() - t0) / 1e9, KernelCache.defaultDirectory());
    }

    // ---------------------------------------------------------------- GPU: memory and transfers

    @Test
    void transfersRoundTripEveryTypeWithTheCpuRounding() {
        assumeGpu();
        double[] v = random(new SplittableRandom(1), 1001, -300, 300);
        v[0] = 1 + Math.pow(2, -8);
        v[1] = Double.NaN;
        v[2] = Double.POSITIVE_INFINITY;
        for (DType dt : new DType[]{DType.F32, DType.F64, DType.BF16, DType.F16}) {
            try (Pair p = Pair.of(dt, Shape.of(v.length), v)) {
                assertArrayEquals(cpu.download(p.c()), gpu.download(p.g()), 0.0, dt.toString());
            }
        }
        int[] ints = {0, -1, Integer.MAX_VALUE, 42};
        try (Tensor t = gpu.uploadInts(Shape.of(4), ints)) {
            assertArrayEquals(ints, gpu.downloadInts(t));
        }
        try (Tensor z = gpu.allocate(DType.F32, 3, 5)) {
            assertArrayEquals(new double[15], gpu.download(z), 0.0, "allocate zero-fills");
        }
    }

    @Test
    void memoryStatsAndTheCachingAllocator() {
        assumeGpu();
        long before = gpu.memoryStats().liveBytes();
        Tensor t = gpu.allocate(DType.F32, 1000, 1000);
        assertEquals(before + 4_000_000, gpu.memoryStats().liveBytes());
        assertTrue(gpu.memoryStats().peakBytes() >= before + 4_000_000);
        t.close();
        assertEquals(before, gpu.memoryStats().liveBytes());
        long reserved = gpu.reservedBytes();
        for (int i = 0; i < 50; i++) gpu.allocate(DType.F32, 1000, 1000).close();
        assertEquals(reserved, gpu.reservedBytes(), "freed blocks are reused, not reallocated");
        Tensor closed = gpu.allocate(DType.F32, 4);
        closed.close();
        assertThrows(IllegalStateException.class, () -> gpu.download(closed));
    }

    @Test
    void workFromOtherThreadsUsesTheSameContext() throws Exception {
        assumeGpu();
        AtomicReference<double[]> result = new AtomicReference<>();
        try (Tensor a = gpu.upload(DType.F32, Shape.of(3), new double[]{1, 2, 3})) {
            Thread th = Thread.ofPlatform().start(() -> {
                try (Tensor b = gpu.upload(DType.F32, Shape.of(3), new double[]{10, 20, 30}); Tensor c = gpu.allocate(DType.F32, 3)) {
                    gpu.kernels().add(a, b, c);
                    result.set(gpu.download(c));
                }
            });
            th.join();
        }
        assertArrayEquals(new double[]{11, 22, 33}, result.get(), 0.0);
    }

    // ---------------------------------------------------------------- GPU: GEMM

    private static void gemmVsCpu(int m, int n, int k, boolean ta, boolean tb, DType da, DType db, DType dc, double alpha,
                                  double beta, double tol, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
        try (Pair a = Pair.of(da, Shape.of(ar, ac), random(r, ar * ac, -1, 1));
             Pair b = Pair.of(db, Shape.of(br, bc), random(r, br * bc, -1, 1));
             Pair c = Pair.of(dc, Shape.of(m, n), random(r, m * n, -1, 1))) {
            if (beta == 0) gpu.kernels().fill(c.g(), Double.NaN);
            gpu.kernels().gemm(ta, tb, alpha, a.g(), b.g(), beta, c.g());
            cpu.kernels().gemm(ta, tb, alpha, a.c(), b.c(), beta, c.c());
            close(String.format("gemm %dx%dx%d ta=%b tb=%b %s x %s -> %s", m, n, k, ta, tb, da, db, dc), c.c(), c.g(), tol);
        }
    }

    @Test
    void mixedTypeGemmsMatchTheCpu() {
        assumeGpu();
        DType[] types = {DType.F32, DType.F64, DType.BF16, DType.F16};
        long seed = 0;
        for (DType da : types)
            for (DType db : types)
                for (DType dc : types) {
                    double tol = switch (dc) {
                        case F64 -> 1e-10;
                        case F32 -> 5e-5;
                        case BF16 -> 2e-2;
                        default -> 2e-3;
                    };
                    gemmVsCpu(37, 29, 53, seed % 2 == 0, seed % 3 == 0, da, db, dc, 0.75, seed % 2 == 0 ? 0 : 0.5, tol, seed++);
                }
    }

    /**
     * LoRA's F32 rank-r operands beside bf16 ones ({@link LowRankSplit}: hi/mid/lo bf16 parts on the tensor-core GEMM):
     * to F32 precision where C is F32 (the CPU widens the bf16 operand exactly and sums in F32: 1e-5 of max|C|, where a
     * bf16-rounded operand would be off by ~4e-3), to one bf16 rounding where two F32 operands over a rank-deep K make a
     * bf16 C (1e-2 of max|C|: a bf16 ulp at |C| near 2 is 0.0156, and the two may round apart); every transposition,
     * ranks 1, 16, 64, 1024 (the largest split) and 1025 (the converting path).
     */
    @Test
    void lowRankSplitGemmsMatchTheCpu() {
        assumeGpu();
        long seed = 100;
        for (int rank : new int[]{1, 16, 64, 1024, 1025})
            for (int t = 0; t < 4; t++) {
                boolean ta = (t & 1) != 0, tb = (t & 2) != 0;
                double beta = t == 1 || t == 2 ? 1 : 0; // each transA with beta 0 (C NaN, ignored) and with beta 1
                gemmVsCpu(207, rank, 300, ta, tb, DType.BF16, DType.F32, DType.F32, 0.5, beta, 1e-5, seed++);   // X A^T, dY B
                gemmVsCpu(rank, 207, 300, ta, tb, DType.F32, DType.BF16, DType.F32, 2.0, beta, 1e-5, seed++);   // G X, B^T dY^T
                gemmVsCpu(131, 97, rank, ta, tb, DType.F32, DType.F32, DType.BF16, 2.0, beta, 1e-2, seed++);    // s (XA) B^T
            }
    }

    @Test
    void largeAndTiledGemmsMatchTheCpu() {
        assumeGpu();
        gemmVsCpu(512, 1024, 2048, false, true, DType.F32, DType.F32, DType.F32, 1, 0, 5e-5, 1);
        gemmVsCpu(777, 333, 1500, true, false, DType.BF16, DType.BF16, DType.F32, 1, 1, 5e-5, 2);
        GemmOp op = ((CudaKernels) gpu.kernels()).gemmOp();
        try {
            op.tileElements(1000); // a few rows per tile: exercises every tiling branch
            for (boolean ta : new boolean[]{false, true})
                for (boolean tb : new boolean[]{false, true}) {
                    gemmVsCpu(70, 90, 110, ta, tb, DType.F32, DType.BF16, DType.F32, 0.5, 0.25, 5e-5, 3);
                    gemmVsCpu(70, 90, 110, ta, tb, DType.BF16, DType.F32, DType.F32, 0.5, 0, 5e-5, 4);
                    gemmVsCpu(70, 90, 110, ta, tb, DType.F32, DType.BF16, DType.F64, 1, 1, 1e-10, 5);
                }
        } finally {
            op.tileElements(GemmOp.TILE_ELEMENTS);
        }
    }

    /**
     * NF4 weights as GEMM operands, whole and tiled by rows, against the CPU. The GPU keeps the double-quantized
     * scales in that form (the CPU gets their float32 reconstruction); with 208 columns rows start inside a 64-block
     * and off the kernel's 32-element groups.
     */
    @Test
    void nf4GemmsTiledAndWholeMatchTheCpu() {
        assumeGpu();
        SplittableRandom r = new SplittableRandom(7);
        for (int in : new int[]{256, 208}) {
            int out = 96, n = 40;
            float[] w = new float[out * in];
            for (int i = 0; i < w.length; i++) w[i] = (float) (r.nextGaussian() * 0.05);
            Nf4Weight q = Nf4.quantize(w, true);
            GemmOp op = ((CudaKernels) gpu.kernels()).gemmOp();
            for (long tile : new long[]{GemmOp.TILE_ELEMENTS, 3L * in}) {
                op.tileElements(tile);
                long before = gpu.memoryStats().liveBytes();
                try (Tensor wg = gpu.uploadNf4(Shape.of(out, in), MemorySegment.ofArray(q.packed()), q.scales());
                     Tensor wc = cpu.uploadNf4(Shape.of(out, in), MemorySegment.ofArray(q.packed()), q.blockScales());
                     Pair x = Pair.of(DType.F32, Shape.of(n, in), random(r, n * in, -1, 1));
                     Pair dy = Pair.of(DType.F32, Shape.of(n, out), random(r, n * out, -1, 1));
                     Pair y = Pair.zeros(DType.F32, Shape.of(n, out)); Pair dx = Pair.zeros(DType.F32, Shape.of(n, in));
                     Tensor wideG = gpu.allocate(DType.F32, out, in); Tensor wideC = cpu.allocate(DType.F32, out, in)) {
                    int blocks = Nf4.blocks((long) out * in);
                    long scaleBytes = 1024 + 4L * Math.ceilDiv(blocks, 256) + blocks;
                    assertEquals((long) out * in / 2 + scaleBytes, gpu.memoryStats().liveBytes() - before
                            - 4L * (2L * n * in + 2L * n * out + (long) out * in), "NF4 weight with its double-quantized scales");
                    assertArrayEquals(cpu.download(wc), gpu.download(wg), 0.0, "NF4 download");
                    gpu.kernels().copy(wg, wideG);
                    cpu.kernels().copy(wc, wideC);
                    close("NF4 copy", wideC, wideG, 0);
                    gpu.kernels().gemm(false, true, 1, x.g(), wg, 0, y.g());
                    cpu.kernels().gemm(false, true, 1, x.c(), wc, 0, y.c());
                    close("X W_nf4^T in " + in + " tile " + tile, y.c(), y.g(), 5e-5);
                    gpu.kernels().gemm(false, false, 1, dy.g(), wg, 0, dx.g());
                    cpu.kernels().gemm(false, false, 1, dy.c(), wc, 0, dx.c());
                    close("dY W_nf4 in " + in + " tile " + tile, dx.c(), dx.g(), 5e-5);
                } finally {
                    op.tileElements(GemmOp.TILE_ELEMENTS);
                }
            }
        }
    }


    @Test
    void gemmOnRowViewsAndBatches() {
        assumeGpu();
        SplittableRandom r = new SplittableRandom(9);
        try (Pair a = Pair.of(DType.F32, Shape.of(10, 7), random(r, 70, -1, 1)); Pair b = Pair.of(DType.F32, Shape.of(5, 7), random(r, 35, -1, 1));
             Pair c = Pair.zeros(DType.F32, Shape.of(10, 5))) {
            gpu.kernels().gemm(false, true, 1, a.g().rows(3, 4), b.g(), 0, c.g().rows(5, 4));
            cpu.kernels().gemm(false, true, 1, a.c().rows(3, 4), b.c(), 0, c.c().rows(5, 4));
            close("gemm on row views (odd offsets)", c.c(), c.g(), 5e-5);
        }
        try (Pair a = Pair.of(DType.BF16, Shape.of(6, 33, 17), random(r, 6 * 33 * 17, -1, 1));
             Pair b = Pair.of(DType.BF16, Shape.of(6, 19, 17), random(r, 6 * 19 * 17, -1, 1));
             Pair c = Pair.of(DType.F32, Shape.of(6, 33, 19), random(r, 6 * 33 * 19, -1, 1))) {
            gpu.kernels().gemmBatched(false, true, 0.5, a.g(), b.g(), 0.25, c.g());
            cpu.kernels().gemmBatched(false, true, 0.5, a.c(), b.c(), 0.25, c.c());
            close("batched BF16 gemm", c.c(), c.g(), 5e-5);
        }
    }

    // ---------------------------------------------------------------- GPU: other kernels with mixed and large shapes

    @Test
    void rmsNormWithA16BitWeightMatchesTheCpu() {
        assumeGpu();
        SplittableRandom r = new SplittableRandom(11);
        int n = 300, d = 4096;
        for (DType wt : new DType[]{DType.BF16, DType.F16, DType.F32}) {
            try (Pair x = Pair.of(DType.F32, Shape.of(n, d), random(r, n * d, -2, 2)); Pair w = Pair.of(wt, Shape.of(d), random(r, d, 0.5, 1.5));
                 Pair dy = Pair.of(DType.F32, Shape.of(n, d), random(r, n * d, -1, 1)); Pair dw = Pair.of(DType.F32, Shape.of(d), random(r, d, -1, 1));
                 Pair y = Pair.zeros(DType.F32, Shape.of(n, d)); Pair rstd = Pair.zeros(DType.F32, Shape.of(n)); Pair dx = Pair.zeros(DType.F32, Shape.of(n, d))) {
                gpu.kernels().rmsNormForward(x.g(), w.g(), 1e-5, y.g(), rstd.g());
                cpu.kernels().rmsNormForward(x.c(), w.c(), 1e-5, y.c(), rstd.c());
                close("rmsnorm y, weight " + wt, y.c(), y.g(), 5e-5);
                close("rmsnorm rstd", rstd.c(), rstd.g(), 5e-5);
                gpu.kernels().rmsNormBackward(dy.g(), x.g(), w.g(), rstd.g(), dx.g(), dw.g());
                cpu.kernels().rmsNormBackward(dy.c(), x.c(), w.c(), rstd.c(), dx.c(), dw.c());
                close("rmsnorm dx", dx.c(), dx.g(), 5e-5);
                close("rmsnorm dw", dw.c(), dw.g(), 5e-5);
            }
        }
    }

    @Test
    void crossEntropyWithF64StatisticsAndALargeVocabulary() {
        assumeGpu();
        SplittableRandom r = new SplittableRandom(12);
        int n = 37, vocab = 128_256;
        int[] y = new int[n];
        for (int i = 0; i < n; i++) y[i] = i % 5 == 0 ? -100 : r.nextInt(vocab);
        try (Pair logits = Pair.of(DType.F32, Shape.of(n, vocab), random(r, n * vocab, -10, 10));
             Tensor lg = gpu.uploadInts(Shape.of(n), y); Tensor lc = cpu.uploadInts(Shape.of(n), y);
             Pair loss = Pair.zeros(DType.F64, Shape.of(n)); Pair lse = Pair.zeros(DType.F64, Shape.of(n))) {
            gpu.kernels().crossEntropyForward(logits.g(), lg, -100, loss.g(), lse.g());
            cpu.kernels().crossEntropyForward(logits.c(), lc, -100, loss.c(), lse.c());
            close("CE loss", loss.c(), loss.g(), 5e-5);
            close("CE lse", lse.c(), lse.g(), 5e-5);
            gpu.kernels().crossEntropyBackward(logits.g(), lg, lse.g(), -100, 0.5, logits.g());
            cpu.kernels().crossEntropyBackward(logits.c(), lc, lse.c(), -100, 0.5, logits.c());
            close("CE dlogits in place", logits.c(), logits.g(), 5e-5);
            int[] outside = y.clone();
            outside[3] = vocab;
            try (Tensor bad = gpu.uploadInts(Shape.of(n), outside)) {
                var e = assertThrows(IllegalArgumentException.class,
                        () -> gpu.kernels().crossEntropyForward(logits.g(), bad, -100, loss.g(), lse.g()));
                assertTrue(e.getMessage().contains("label " + vocab + " at row 3"), e.getMessage());
            }
        }
    }

    @Test
    void embeddingWithABf16TableIsDeterministic() {
        assumeGpu();
        SplittableRandom r = new SplittableRandom(13);
        int vocab = 1000, dim = 300, n = 5000;
        int[] ids = new int[n];
        for (int i = 0; i < n; i++) ids[i] = r.nextInt(20); // many repeats
        try (Pair table = Pair.of(DType.BF16, Shape.of(vocab, dim), random(r, vocab * dim, -1, 1));
             Tensor ig = gpu.uploadInts(Shape.of(n), ids); Tensor ic = cpu.uploadInts(Shape.of(n), ids);
             Pair out = Pair.zeros(DType.F32, Shape.of(n, dim)); Pair dOut = Pair.of(DType.F32, Shape.of(n, dim), random(r, n * dim, -1, 1));
             Pair dTable = Pair.zeros(DType.F32, Shape.of(vocab, dim)); Tensor again = gpu.allocate(DType.F32, vocab, dim)) {
            gpu.kernels().embeddingForward(table.g(), ig, out.g());
            cpu.kernels().embeddingForward(table.c(), ic, out.c());
            close("embedding (BF16 table -> F32)", out.c(), out.g(), 0);
            gpu.kernels().embeddingBackward(dOut.g(), ig, dTable.g());
            gpu.kernels().embeddingBackward(dOut.g(), ig, again);
            cpu.kernels().embeddingBackward(dOut.c(), ic, dTable.c());
            close("embedding backward", dTable.c(), dTable.g(), 5e-5);
            assertArrayEquals(gpu.download(dTable.g()), gpu.download(again), 0.0, "bitwise repeatable");
        }
    }

    @Test
    void attentionAtTrainingSizesMatchesTheCpuAndIsDeterministic() {
        assumeGpu();
        for (int[] cfg : new int[][]{{2, 200, 8, 2, 64, 1}, {1, 130, 4, 4, 128, 0}, {1, 65, 6, 3, 80, 1}}) {
            int batch = cfg[0], seq = cfg[1], hq = cfg[2], hkv = cfg[3], hd = cfg[4];
            boolean packed = cfg[5] == 1;
            AttentionDims d = new AttentionDims(batch, seq, hq, hkv, hd);
            SplittableRandom r = new SplittableRandom(seq);
            int[] seg = null;
            if (packed) {
                seg = new int[batch * seq];
                for (int i = 0; i < seg.length; i++) seg[i] = (i % seq) / 37;
            }
            int qn = batch * seq * hq * hd, kn = batch * seq * hkv * hd;
            try (Pair q = Pair.of(DType.F32, Shape.of(batch, seq, hq, hd), random(r, qn, -2, 2));
                 Pair k = Pair.of(DType.F32, Shape.of(batch, seq, hkv, hd), random(r, kn, -2, 2));
                 Pair v = Pair.of(DType.F32, Shape.of(batch, seq, hkv, hd), random(r, kn, -1, 1));
                 Pair dOut = Pair.of(DType.F32, Shape.of(batch, seq, hq, hd), random(r, qn, -1, 1));
                 Tensor sg = seg == null ? null : gpu.uploadInts(Shape.of(batch, seq), seg);
                 Tensor sc = seg == null ? null : cpu.uploadInts(Shape.of(batch, seq), seg);
                 Pair out = Pair.zeros(DType.F32, Shape.of(batch, seq, hq, hd)); Pair lse = Pair.zeros(DType.F32, Shape.of(batch, hq, seq));
                 Pair dq = Pair.zeros(DType.F32, Shape.of(batch, seq, hq, hd)); Pair dk = Pair.zeros(DType.F32, Shape.of(batch, seq, hkv, hd));
                 Pair dv = Pair.zeros(DType.F32, Shape.of(batch, seq, hkv, hd)); Tensor dk2 = gpu.allocate(DType.F32, batch, seq, hkv, hd)) {
                double scale = 1 / Math.sqrt(hd);
                gpu.kernels().attentionForward(d, q.g(), k.g(), v.g(), sg, scale, out.g(), lse.g());
                cpu.kernels().attentionForward(d, q.c(), k.c(), v.c(), sc, scale, out.c(), lse.c());
                String tag = "attention " + d + (packed ? " packed" : "");
                close(tag + " out", out.c(), out.g(), 5e-5);
                close(tag + " lse", lse.c(), lse.g(), 5e-5);
                gpu.kernels().attentionBackward(d, dOut.g(), q.g(), k.g(), v.g(), sg, scale, out.g(), lse.g(), dq.g(), dk.g(), dv.g());
                cpu.kernels().attentionBackward(d, dOut.c(), q.c(), k.c(), v.c(), sc, scale, out.c(), lse.c(), dq.c(), dk.c(), dv.c());
                close(tag + " dq", dq.c(), dq.g(), 5e-5);
                close(tag + " dk", dk.c(), dk.g(), 5e-5);
                close(tag + " dv", dv.c(), dv.g(), 5e-5);
                try (Tensor dq2 = gpu.allocate(DType.F32, batch, seq, hq, hd); Tensor dv2 = gpu.allocate(DType.F32, batch, seq, hkv, hd)) {
                    gpu.kernels().attentionBackward(d, dOut.g(), q.g(), k.g(), v.g(), sg, scale, out.g(), lse.g(), dq2, dk2, dv2);
                    assertArrayEquals(gpu.download(dk.g()), gpu.download(dk2), 0.0, tag + " dk bitwise repeatable");
                    assertArrayEquals(gpu.download(dq.g()), gpu.download(dq2), 0.0, tag + " dq bitwise repeatable");
                }
            }
        }
    }

    /** Cosine similarity of two vectors (1 for two zero vectors). */
    private static double cosine(double[] a, double[] b) {
        double ab = 0, aa = 0, bb = 0;
        for (int i = 0; i < a.length; i++) {
            ab += a[i] * b[i];
            aa += a[i] * a[i];
            bb += b[i] * b[i];
        }
        return aa == 0 && bb == 0 ? 1 : ab / Math.sqrt(aa * bb);
    }

    /** A GPU result against an F64 reference: max error relative to the reference's largest magnitude, and cosine. */
    private static void closeF64(String what, double[] expected, Tensor actualGpu, double tol, double minCosine) {
        double[] a = gpu.download(actualGpu);
        assertEquals(expected.length, a.length, what);
        double maxRef = 0, worst = 0;
        for (double x : expected) maxRef = Math.max(maxRef, Math.abs(x));
        for (int i = 0; i < a.length; i++) worst = Math.max(worst, Double.isNaN(a[i]) ? Double.POSITIVE_INFINITY : Math.abs(a[i] - expected[i]));
        // a reference that is (almost) zero, e.g. dq of a one-token sequence, is checked against an absolute floor
        double scale = Math.max(maxRef, 1e-3);
        double cos = cosine(expected, a);
        System.out.printf(Locale.ROOT, "[cuda flash] %s: max |err| / max |ref| = %.2e, cosine %.7f%n", what, worst / scale, cos);
        assertTrue(worst <= tol * scale, String.format(Locale.ROOT, "%s: max |err| %.3e > %.1e x %.3e", what, worst, tol, scale));
        if (maxRef >= 1e-3) assertTrue(cos >= minCosine, what + ": cosine " + cos);
    }

    @Test
    void tensorCoreAttentionMatchesAnF64ReferenceOnAwkwardShapes() {
        assumeGpu();
        // batch, seq, query heads, kv heads, head dim, packed segments, extra cached keys (forward only)
        int[][] cases = {{2, 207, 8, 2, 64, 1, 0}, {1, 13, 4, 4, 128, 0, 0}, {1, 130, 4, 1, 128, 1, 0}, {1, 1, 2, 1, 64, 0, 0},
                {3, 64, 2, 2, 64, 0, 0}, {1, 5, 4, 2, 64, 0, 70}, {1, 33, 2, 1, 128, 0, 100}};
        for (DType dt : new DType[]{DType.BF16, DType.F16}) {
            for (int[] cfg : cases) {
                int batch = cfg[0], seq = cfg[1], hq = cfg[2], hkv = cfg[3], hd = cfg[4], kvSeq = seq + cfg[6];
                boolean packed = cfg[5] == 1, cached = kvSeq > seq;
                if (dt == DType.F16 && (packed || cached)) continue;
                AttentionDims d = new AttentionDims(batch, seq, hq, hkv, hd, kvSeq);
                SplittableRandom r = new SplittableRandom(seq * 31L + hd);
                int[] seg = null;
                if (packed) {
                    seg = new int[batch * seq];
                    for (int i = 0; i < seg.length; i++) seg[i] = (i % seq) / 37;
                }
                int qn = batch * seq * hq * hd, kn = batch * kvSeq * hkv * hd;
                String tag = "flash " + dt + " " + d + (packed ? " packed" : "");
                try (Tensor qg = gpu.upload(dt, Shape.of(batch, seq, hq, hd), random(r, qn, -2, 2));
                     Tensor kg = gpu.upload(dt, Shape.of(batch, kvSeq, hkv, hd), random(r, kn, -2, 2));
                     Tensor vg = gpu.upload(dt, Shape.of(batch, kvSeq, hkv, hd), random(r, kn, -1, 1));
                     Tensor dOg = gpu.upload(dt, Shape.of(batch, seq, hq, hd), random(r, qn, -1, 1));
                     Tensor sg = seg == null ? null : gpu.uploadInts(Shape.of(batch, seq), seg);
                     Tensor sc = seg == null ? null : cpu.uploadInts(Shape.of(batch, seq), seg);
                     Tensor og = gpu.allocate(dt, batch, seq, hq, hd); Tensor lg = gpu.allocate(DType.F32, batch, hq, seq);
                     // the reference sees exactly the 16-bit inputs, in F64
                     Tensor qc = cpu.upload(DType.F64, qg.shape(), gpu.download(qg));
                     Tensor kc = cpu.upload(DType.F64, kg.shape(), gpu.download(kg));
                     Tensor vc = cpu.upload(DType.F64, vg.shape(), gpu.download(vg));
                     Tensor dOc = cpu.upload(DType.F64, dOg.shape(), gpu.download(dOg));
                     Tensor oc = cpu.allocate(DType.F64, batch, seq, hq, hd); Tensor lc = cpu.allocate(DType.F64, batch, hq, seq)) {
                    double scale = 1 / Math.sqrt(hd);
                    gpu.kernels().attentionForward(d, qg, kg, vg, sg, scale, og, lg);
                    cpu.kernels().attentionForward(d, qc, kc, vc, sc, scale, oc, lc);
                    closeF64(tag + " out", cpu.download(oc), og, 2e-2, 0.9999);
                    closeF64(tag + " lse", cpu.download(lc), lg, 1e-5, 0.9999999);
                    for (FlashAttention.Kernels other : otherKernels(hd)) { // every other set of kernels: the same bits
                        try (Tensor o1 = gpu.allocate(dt, og.shape()); Tensor l1 = gpu.allocate(DType.F32, lg.shape())) {
                            FlashAttention.forward(gpu, d, qg, kg, vg, sg, scale, o1, l1, other);
                            assertArrayEquals(gpu.download(og), gpu.download(o1), 0.0, tag + " out, " + other);
                            assertArrayEquals(gpu.download(lg), gpu.download(l1), 0.0, tag + " lse, " + other);
                        }
                    }
                    if (cached) continue;
                    // dK/dV with each kv head's group in one block, in the fewest chunks (of at least two) that double
                    // the blocks, and as the shape chooses (these small shapes: one chunk per query head)
                    long dkdvBlocks = (long) hkv * batch * Math.ceilDiv(seq, FlashAttention.KEY_ROWS);
                    for (int minBlocks : new int[]{1, (int) (2 * dkdvBlocks), FlashAttention.minDkdvBlocks}) {
                        int defaultMin = FlashAttention.minDkdvBlocks;
                        try (Tensor dqg = gpu.allocate(dt, qg.shape()); Tensor dkg = gpu.allocate(dt, kg.shape()); Tensor dvg = gpu.allocate(dt, vg.shape());
                             Tensor dqc = cpu.allocate(DType.F64, qg.shape()); Tensor dkc = cpu.allocate(DType.F64, kg.shape());
                             Tensor dvc = cpu.allocate(DType.F64, vg.shape()); Tensor dk2 = gpu.allocate(dt, kg.shape());
                             Tensor dq2 = gpu.allocate(dt, qg.shape()); Tensor dv2 = gpu.allocate(dt, vg.shape())) {
                            FlashAttention.minDkdvBlocks = minBlocks;
                            String btag = tag + " dK/dV in " + FlashAttention.dkdvChunks(d) + " chunk(s)";
                            gpu.kernels().attentionBackward(d, dOg, qg, kg, vg, sg, scale, og, lg, dqg, dkg, dvg);
                            cpu.kernels().attentionBackward(d, dOc, qc, kc, vc, sc, scale, oc, lc, dqc, dkc, dvc);
                            closeF64(btag + " dq", cpu.download(dqc), dqg, 3e-2, 0.9995);
                            closeF64(btag + " dk", cpu.download(dkc), dkg, 3e-2, 0.9995);
                            closeF64(btag + " dv", cpu.download(dvc), dvg, 3e-2, 0.9995);
                            gpu.kernels().attentionBackward(d, dOg, qg, kg, vg, sg, scale, og, lg, dq2, dk2, dv2);
                            assertArrayEquals(gpu.download(dqg), gpu.download(dq2), 0.0, btag + " dq bitwise repeatable");
                            assertArrayEquals(gpu.download(dkg), gpu.download(dk2), 0.0, btag + " dk bitwise repeatable");
                            assertArrayEquals(gpu.download(dvg), gpu.download(dv2), 0.0, btag + " dv bitwise repeatable");
                            for (FlashAttention.Kernels other : otherKernels(hd)) {
                                FlashAttention.backward(gpu, d, dOg, qg, kg, vg, sg, scale, og, lg, dq2, dk2, dv2, other);
                                assertArrayEquals(gpu.download(dqg), gpu.download(dq2), 0.0, btag + " dq, " + other);
                                assertArrayEquals(gpu.download(dkg), gpu.download(dk2), 0.0, btag + " dk, " + other);
                                assertArrayEquals(gpu.download(dvg), gpu.download(dv2), 0.0, btag + " dv, " + other);
                            }
                        } finally {
                            FlashAttention.minDkdvBlocks = defaultMin;
                        }
                    }
                }
            }
        }
    }

    /**
     * The tensor-core kernels this GPU can run at head dimension {@code hd} other than the ones it picks: the one-tile
     * mma.sync kernels, at D = 128 the two-tile ones, and wgmma on compute capability 9.0.
     */
    private static List<FlashAttention.Kernels> otherKernels(int hd) {
        FlashAttention.Kernels chosen = FlashAttention.kernels(gpu.device, hd);
        List<FlashAttention.Kernels> out = new ArrayList<>();
        for (FlashAttention.Kernels k : FlashAttention.Kernels.values())
            if (k != chosen && FlashAttention.runs(gpu.device, hd, k)) out.add(k);
        return out;
    }

    @Test
    void bf16ActivationsThroughTheElementwiseKernels() {
        assumeGpu();
        SplittableRandom r = new SplittableRandom(14);
        int n = 10_000;
        try (Pair g = Pair.of(DType.BF16, Shape.of(n), random(r, n, -6, 6)); Pair u = Pair.of(DType.BF16, Shape.of(n), random(r, n, -2, 2));
             Pair out = Pair.zeros(DType.BF16, Shape.of(n)); Pair acc = Pair.of(DType.F32, Shape.of(n), random(r, n, -1, 1))) {
            gpu.kernels().swigluForward(g.g(), u.g(), out.g());
            cpu.kernels().swigluForward(g.c(), u.c(), out.c());
            close("swiglu bf16", out.c(), out.g(), 2e-2);
            gpu.kernels().axpy(0.5, out.g(), acc.g()); // BF16 x into an F32 y: mixed types
            cpu.kernels().axpy(0.5, out.c(), acc.c());
            close("axpy bf16 -> f32", acc.c(), acc.g(), 5e-5);
            gpu.kernels().add(acc.g(), g.g(), acc.g()); // F32 + BF16 into F32, out aliasing a
            cpu.kernels().add(acc.c(), g.c(), acc.c());
            close("add f32 + bf16", acc.c(), acc.g(), 5e-5);
        }
    }

    @Test
    void reductionsOverManyRowsAndNonFiniteValues() {
        assumeGpu();
        SplittableRandom r = new SplittableRandom(15);
        int rows = 200_000, cols = 3;
        try (Pair x = Pair.of(DType.F32, Shape.of(rows, cols), random(r, rows * cols, -1, 1)); Pair out = Pair.of(DType.F64, Shape.of(cols), new double[]{1, 2, 3})) {
            gpu.kernels().sumRows(x.g(), out.g(), true);
            cpu.kernels().sumRows(x.c(), out.c(), true);
            close("sumRows 200000 rows", out.c(), out.g(), 1e-10);
            double ss = gpu.kernels().sumOfSquares(x.g());
            assertEquals(cpu.kernels().sumOfSquares(x.c()), ss, 1e-9 * ss);
        }
        try (Tensor t = gpu.upload(DType.F32, Shape.of(3), new double[]{1, Double.POSITIVE_INFINITY, 2})) {
            assertEquals(Double.POSITIVE_INFINITY, gpu.kernels().sumOfSquares(t));
        }
        try (Tensor t = gpu.upload(DType.F32, Shape.of(3), new double[]{1, Double.NaN, 2})) {
            assertTrue(Double.isNaN(gpu.kernels().sumOfSquares(t)));
        }
    }

    @Test
    void argumentErrorsMatchTheCpuBackend() {
        assumeGpu();
        Kernels k = gpu.kernels();
        try (Tensor a = gpu.allocate(DType.F32, 3, 4); Tensor b = gpu.allocate(DType.F32, 5, 6); Tensor c = gpu.allocate(DType.F32, 3, 6);
             Tensor table = gpu.allocate(DType.F32, 4, 3); Tensor ids = gpu.uploadInts(Shape.of(2), new int[]{0, 4});
             Tensor out = gpu.allocate(DType.F32, 2, 3); Tensor cpuTensor = cpu.allocate(DType.F32, 3, 4)) {
            assertTrue(assertThrows(IllegalArgumentException.class, () -> k.gemm(false, false, 1, a, b, 0, c)).getMessage().contains("do not agree"));
            assertTrue(assertThrows(IllegalArgumentException.class, () -> k.embeddingForward(table, ids, out)).getMessage().contains("token id 4"));
            assertTrue(assertThrows(IllegalArgumentException.class, () -> k.add(a, cpuTensor, a)).getMessage().contains("does not belong"));
            assertTrue(assertThrows(IllegalArgumentException.class, () -> k.add(a, ids, a)).getMessage().contains("expected a floating tensor"));
        }
    }

    // ---------------------------------------------------------------- GPU: timings (printed, not asserted)

    @Test
    void timings() {
        assumeGpu();
        List<String> lines = new ArrayList<>();
        for (DType dt : new DType[]{DType.F32, DType.BF16}) {
            int s = 4096;
            try (Tensor a = gpu.allocate(dt, s, s); Tensor b = gpu.allocate(dt, s, s); Tensor c = gpu.allocate(DType.F32, s, s)) {
                gpu.kernels().fill(a, 0.01);
                gpu.kernels().fill(b, 0.02);
                gpu.kernels().gemm(false, true, 1, a, b, 0, c);
                float ms = gpu.timeMillis(() -> {
                    for (int i = 0; i < 10; i++) gpu.kernels().gemm(false, true, 1, a, b, 0, c);
                }) / 10;
                lines.add(String.format(Locale.ROOT, "gemm %d^3 %s->F32: %.3f ms, %.1f TFLOP/s", s, dt, ms, 2.0 * s * s * s / ms / 1e9));
            }
        }
        int batch = 4, seq = 1024, hq = 32, hkv = 8, hd = 128;
        AttentionDims d = new AttentionDims(batch, seq, hq, hkv, hd);
        try (Tensor q = gpu.allocate(DType.F32, batch, seq, hq, hd); Tensor k = gpu.allocate(DType.F32, batch, seq, hkv, hd);
             Tensor v = gpu.allocate(DType.F32, batch, seq, hkv, hd); Tensor o = gpu.allocate(DType.F32, batch, seq, hq, hd);
             Tensor lse = gpu.allocate(DType.F32, batch, hq, seq); Tensor dq = gpu.allocate(DType.F32, batch, seq, hq, hd);
             Tensor dk = gpu.allocate(DType.F32, batch, seq, hkv, hd); Tensor dv = gpu.allocate(DType.F32, batch, seq, hkv, hd)) {
            gpu.kernels().fill(q, 0.1);
            gpu.kernels().fill(k, 0.2);
            gpu.kernels().fill(v, 0.3);
            double scale = 1 / Math.sqrt(hd);
            gpu.kernels().attentionForward(d, q, k, v, null, scale, o, lse);
            float fwd = gpu.timeMillis(() -> gpu.kernels().attentionForward(d, q, k, v, null, scale, o, lse));
            float bwd = gpu.timeMillis(() -> gpu.kernels().attentionBackward(d, o, q, k, v, null, scale, o, lse, dq, dk, dv));
            double flops = 4.0 * batch * hq * seq * (double) seq / 2 * hd;
            lines.add(String.format(Locale.ROOT, "attention F32 %s: forward %.2f ms (%.1f TFLOP/s), backward %.2f ms", d, fwd, flops / fwd / 1e9, bwd));
        }
        for (int headDim : new int[]{64, 128}) {
            int heads = 4096 / headDim / 2, kvh = heads / 4, sq = 2048;
            AttentionDims db = new AttentionDims(batch, sq, heads, kvh, headDim);
            try (Tensor q = gpu.allocate(DType.BF16, batch, sq, heads, headDim); Tensor k = gpu.allocate(DType.BF16, batch, sq, kvh, headDim);
                 Tensor v = gpu.allocate(DType.BF16, batch, sq, kvh, headDim); Tensor o = gpu.allocate(DType.BF16, batch, sq, heads, headDim);
                 Tensor lse = gpu.allocate(DType.F32, batch, heads, sq); Tensor dq = gpu.allocate(DType.BF16, batch, sq, heads, headDim);
                 Tensor dk = gpu.allocate(DType.BF16, batch, sq, kvh, headDim); Tensor dv = gpu.allocate(DType.BF16, batch, sq, kvh, headDim)) {
                gpu.kernels().fill(q, 0.1);
                gpu.kernels().fill(k, 0.2);
                gpu.kernels().fill(v, 0.3);
                double scale = 1 / Math.sqrt(headDim);
                gpu.kernels().attentionForward(db, q, k, v, null, scale, o, lse);
                gpu.kernels().attentionBackward(db, o, q, k, v, null, scale, o, lse, dq, dk, dv);
                float fwd = gpu.timeMillis(() -> gpu.kernels().attentionForward(db, q, k, v, null, scale, o, lse));
                float bwd = gpu.timeMillis(() -> gpu.kernels().attentionBackward(db, o, q, k, v, null, scale, o, lse, dq, dk, dv));
                double flops = 4.0 * batch * heads * sq * (double) sq / 2 * headDim;
                lines.add(String.format(Locale.ROOT, "attention BF16 tensor cores %s: forward %.2f ms (%.1f TFLOP/s), backward %.2f ms (%.1f TFLOP/s)",
                        db, fwd, flops / fwd / 1e9, bwd, 2.5 * flops / bwd / 1e9));
            }
        }
        try (Tensor one = gpu.allocate(DType.F32, 1)) { // host cost of a launch: what a step of ~5,000 kernels pays
            int n = 20_000;
            for (int i = 0; i < 1000; i++) gpu.kernels().fill(one, i);
            gpu.synchronize();
            long t0 = System.nanoTime();
            for (int i = 0; i < n; i++) gpu.kernels().fill(one, i);
            long enqueued = System.nanoTime();
            gpu.synchronize();
            lines.add(String.format(Locale.ROOT, "launch: %.2f us per kernel enqueued from Java, %.2f us per kernel until done",
                    (enqueued - t0) / 1e3 / n, (System.nanoTime() - t0) / 1e3 / n));
        }
        for (String l : lines) System.out.println("[cuda timing] " + l);
    }
}
