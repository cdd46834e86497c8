package dev.jsloth.opencl;

import dev.jsloth.api.AdamWStep;
import dev.jsloth.api.AttentionDims;
import dev.jsloth.api.DType;
import dev.jsloth.api.KernelArguments;
import dev.jsloth.api.Kernels;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.ops.Dropout;

import java.util.Arrays;

import static dev.jsloth.api.KernelArguments.requireFloating;
import static dev.jsloth.api.KernelArguments.requireNumel;

/**
 * The OpenCL backend's {@link Kernels}: the CPU reference's argument checks (same rules, same messages), then
 * kernel launches. Each launch computes in the {@link Precision} of its operands. Data-dependent checks (label
 * and token-id ranges) read the small I32 tensor back to the host, as the CPU backend does.
 */
final class OpenClKernels implements Kernels {
    private final OpenClBackend be;
    private final LaunchConfig cfg;
    private final AttentionLauncher attention;

    OpenClKernels(OpenClBackend be) {
        this.be = be;
        this.cfg = be.config();
        this.attention = new AttentionLauncher(be);
    }

    // ---------------------------------------------------------------- helpers

    private OpenClTensor t(Tensor t) {
        return be.tensor(t);
    }

    /**
     * The 8-wide BF16 variant of a kernel ({@code name + "_bf16x8"}: 8 elements per access) when every operand given is
     * BF16 with an offset and element count that are multiples of 8; null otherwise.
     */
    private Launch bf16x8(String kernel, Tensor... operands) {
        for (Tensor x : operands)
            if (x.dtype() != DType.BF16 || t(x).offset() % 8 != 0 || x.numel() % 8 != 0) return null;
        return new Launch(be, be.library().kernel(Precision.FLOAT, kernel + "_bf16x8"), Precision.FLOAT);
    }

    /**
     * A kernel of the form {@code kernel(long n, TENSOR(operand)...)} with one work-item per element, or its 8-wide
     * BF16 variant (one per 8 elements, n / 8 passed) where {@link #bf16x8} allows.
     */
    private void elementwise(String kernel, long n, Tensor... operands) {
        Launch wide = bf16x8(kernel, operands);
        long items = wide != null ? n / 8 : n;
        Launch l = (wide != null ? wide : launch(kernel, operands)).i64(items);
        for (Tensor x : operands) l.tensor(t(x));
        l.run(items, cfg.simpleGroup());
    }

    /** A launch of a main-program kernel in the precision of {@code operands}. */
    private Launch launch(String kernel, Tensor... operands) {
        Precision p = Precision.of(operands);
        be.require(p);
        return new Launch(be, be.library().kernel(p, kernel), p);
    }

    /** A tensor kernels can read as numbers: floating, or NF4 with its scales (GEMM operands, copy sources). */
    private OpenClTensor readable(Tensor x) {
        OpenClTensor c = t(x);
        if (!c.dtype().isFloating() && !(c.dtype() == DType.NF4 && c.scales() != null))
            throw new IllegalArgumentException("expected a floating tensor, got " + c.dtype() + " " + c.shape());
        return c;
    }

    // ---------------------------------------------------------------- GEMM

    @Override
    public void gemm(boolean transA, boolean transB, double alpha, Tensor a, Tensor b, double beta, Tensor c) {
        gemm(transA, transB, alpha, a, b, beta, c, 1, a.shape().rows(), a.shape().cols(), b.shape().rows(), b.shape().cols(),
                c.shape().rows(), c.shape().cols());
    }

    @Override
    public void gemmBatched(boolean transA, boolean transB, double alpha, Tensor a, Tensor b, double beta, Tensor c) {
        int batch = KernelArguments.checkBatched(a, b, c);
        gemm(transA, transB, alpha, a, b, beta, c, batch, a.shape().dim(1), a.shape().dim(2), b.shape().dim(1), b.shape().dim(2),
                c.shape().dim(1), c.shape().dim(2));
    }

    /**
     * The wider of the two (F32 for bf16 input with F32 adapters), as on the CPU and CUDA: the generic kernels read each
     * operand in its own type and accumulate in F32; on the tensor cores the F32 operands go in as hi/mid/lo bf16 parts
     * ({@link #lowRankSplit}). F16 input keeps its own type.
     */
    @Override
    public DType lowRankType(DType input, DType parameters) {
        return input == DType.F16 ? input : Kernels.wider(input, parameters);
    }

    /** {@code -Djsloth.opencl.lowRankSplit=true}: {@link #lowRankSplit} off the tensor cores too (tests it on PoCL). */
    private static final boolean SPLIT_EVERYWHERE = Boolean.getBoolean("jsloth.opencl.lowRankSplit");
    /** The largest rank (the split dimension) {@link #lowRankSplit} takes: LoRA's, stacked ones included (as CUDA's). */
    static final int SPLIT_MAX_RANK = 1024;
    private static final int PARTS = 3;
    /** Two bits per part (0 hi, 1 mid, 2 lo): a rank-side split's parts, and a K split's for A and for B. */
    private static final int HI_MID_LO = 0b10_01_00, A_K = 0b01_00_00, B_K = 0b00_01_00;

    private boolean splitsLowRank() {
        return cfg.tensorCores() || SPLIT_EVERYWHERE;
    }

    /**
     * LoRA's F32 operands on the bf16 tensor-core GEMM (CUDA's LowRankSplit, the same layouts): each value as bf16 parts
     * {@code v = hi + mid + lo} (24 bits). One F32 operand whose other dimension is a rank: split along it, one product of
     * three times the rank into F32 partials, added into C ({@code lowrank_fold}, with beta). Two F32 operands over a
     * rank-deep K into a bf16 C: K tripled, {@code [A_hi|A_hi|A_mid][B_hi;B_mid;B_hi]}, straight into C. False, with
     * nothing done, for any other product.
     */
    private boolean lowRankSplit(boolean transA, boolean transB, double alpha, Tensor a, Tensor b, double beta, Tensor c, int m, int n, int k) {
        if ((c.dtype() != DType.F32 && c.dtype() != DType.BF16) || a.shape().rank() != 2 || b.shape().rank() != 2) return false;
        boolean aF32 = a.dtype() == DType.F32, bF32 = b.dtype() == DType.F32;
        if (aF32 && bF32) {
            if (c.dtype() != DType.BF16 || k > SPLIT_MAX_RANK) return false;
            try (Tensor as = tripledAlongK(a, transA, true); Tensor bs = tripledAlongK(b, transB, false)) {
                gemm(transA, transB, alpha, as, bs, beta, c);
            }
            return true;
        }
        boolean splitA = aF32 && b.dtype() == DType.BF16 && m <= SPLIT_MAX_RANK, splitB = bF32 && a.dtype() == DType.BF16 && n <= SPLIT_MAX_RANK;
        if (!splitA && !splitB) return false;
        Tensor s = splitA ? a : b;
        // op(S) gains rows (S is A: [hi; mid; lo]) or columns (S is B: [hi | mid | lo]): stored, the copies one after
        // the other or each row's side by side, as S is stored plain or transposed; the partial products likewise
        boolean sideBySide = splitA == (splitA ? transA : transB);
        try (Tensor parts = split(s, sideBySide, HI_MID_LO);
             Tensor partials = be.allocateForOverwrite(DType.F32, splitA ? Shape.of(PARTS * m, n) : Shape.of(m, PARTS * n))) {
            gemm(transA, transB, alpha, splitA ? parts : a, splitA ? b : parts, 0.0, partials);
            long mn = (long) m * n;
            launch("lowrank_fold", partials, c).i64(mn).i64(n).i32(PARTS).i32(splitA ? 0 : 1).real(beta).tensor(t(partials)).tensor(t(c))
                    .run(mn, cfg.simpleGroup());
        }
        return true;
    }

    /** An operand's three bf16 copies along K (A's columns hi, hi, mid; B's rows hi, mid, hi). */
    private Tensor tripledAlongK(Tensor x, boolean trans, boolean isA) {
        return split(x, isA != trans, isA ? A_K : B_K); // K is a stored column (A plain, B transposed): side by side
    }

    /** {@link #PARTS} bf16 copies of a 2-D F32 tensor as {@code lowrank_split} lays them out, shaped to match. */
    private Tensor split(Tensor x, boolean sideBySide, int select) {
        int rows = Math.toIntExact(x.shape().rows()), cols = Math.toIntExact(x.shape().cols());
        Tensor out = be.allocateForOverwrite(DType.BF16, sideBySide ? Shape.of(rows, PARTS * cols) : Shape.of(PARTS * rows, cols));
        try {
            long n = (long) rows * cols;
            launch("lowrank_split", x, out).i64(n).i64(cols).i32(PARTS).i32(select).i32(sideBySide ? 1 : 0).tensor(t(x)).tensor(t(out))
                    .run(n, cfg.simpleGroup());
            return out;
        } catch (RuntimeException | Error e) {
            out.close();
            throw e;
        }
    }

    /**
     * On the tensor cores (BF16 L, R, A, B; C F32 or BF16; rank at most {@link LaunchConfig#MMA_LOW_RANK_MAX}): one
     * pass, the low-rank pair's slices first in the same K walk (gemm_mma.cl, gemm_wgmma.cl), so C is written once and
     * never read for the adapter's term. Elsewhere (and for an L transposed unlike A) the default two products.
     */
    @Override
    public void gemmPlusLowRank(boolean transA, boolean transB, double alpha, Tensor a, Tensor b, double lowScale, Tensor l,
                                boolean transL, Tensor r, double beta, Tensor c) {
        if (splitsLowRank() && l.dtype() == DType.F32 && r.dtype() == DType.F32 && a.dtype() == DType.BF16 && b.dtype() == DType.BF16
                && c.dtype() == DType.BF16 && transL == transA && l.shape().rank() == 2 && r.shape().rank() == 2 && c != l && c != r
                && PARTS * (transL ? l.shape().rows() : l.shape().cols()) <= LaunchConfig.MMA_LOW_RANK_MAX) {
            // an F32 pair (the adapter's path in F32) tripled along its rank into bf16 parts: still one fused pass
            try (Tensor ls = tripledAlongK(l, transL, true); Tensor rs = tripledAlongK(r, transB, false)) {
                gemmPlusLowRank(transA, transB, alpha, a, b, lowScale, ls, transL, rs, beta, c);
            }
            return;
        }
        if (transL != transA || !cfg.tensorCores() || alpha == 0 || a.dtype() != DType.BF16 || b.dtype() != DType.BF16
                || l.dtype() != DType.BF16 || r.dtype() != DType.BF16 || (c.dtype() != DType.F32 && c.dtype() != DType.BF16)) {
            Kernels.super.gemmPlusLowRank(transA, transB, alpha, a, b, lowScale, l, transL, r, beta, c);
            return;
        }
        long ar = a.shape().rows(), ac = a.shape().cols(), br = b.shape().rows(), bc = b.shape().cols();
        int m = Math.toIntExact(transA ? ac : ar), k = Math.toIntExact(transA ? ar : ac), n = Math.toIntExact(transB ? br : bc);
        int lm = Math.toIntExact(transA ? l.shape().cols() : l.shape().rows()), lowK = Math.toIntExact(transA ? l.shape().rows() : l.shape().cols());
        int rk = Math.toIntExact(transB ? r.shape().cols() : r.shape().rows()), rn = Math.toIntExact(transB ? r.shape().rows() : r.shape().cols());
        if (lm != m || rk != lowK || rn != n)
            throw new IllegalArgumentException("low-rank GEMM shapes do not agree with the product's " + m + "x" + n + ": op(L) " + lm + "x"
                    + lowK + ", op(R) " + rk + "x" + rn + " (L " + l.shape() + (transA ? "^T" : "") + ", R " + r.shape() + (transB ? "^T" : "") + ")");
        if (l == c || r == c) throw new IllegalArgumentException("GEMM output must not alias an input");
        if (k == 0 || lowK == 0 || lowK > LaunchConfig.MMA_LOW_RANK_MAX) {
            Kernels.super.gemmPlusLowRank(transA, transB, alpha, a, b, lowScale, l, transL, r, beta, c);
            return;
        }
        gemm(transA, transB, alpha, a, b, beta, c, 1, ar, ac, br, bc, c.shape().rows(), c.shape().cols(),
                new LowRank(readable(l), readable(r), lowK, lowScale / alpha));
    }

    /** The low-rank pair of {@link #gemmPlusLowRank} as the tensor-core kernels take it; factor = lowScale / alpha. */
    private record LowRank(OpenClTensor l, OpenClTensor r, int k, double factor) {
    }

    private void gemm(boolean transA, boolean transB, double alpha, Tensor a, Tensor b, double beta, Tensor c, int batch,
                      long ar, long ac, long br, long bc, long cr, long cc) {
        gemm(transA, transB, alpha, a, b, beta, c, batch, ar, ac, br, bc, cr, cc, null);
    }

    /** low: a low-rank pair added in the same pass (tensor cores only; null for a plain product). */
    private void gemm(boolean transA, boolean transB, double alpha, Tensor a, Tensor b, double beta, Tensor c, int batch,
                      long ar, long ac, long br, long bc, long cr, long cc, LowRank low) {
        requireFloating(c);
        OpenClTensor ta = readable(a), tb = readable(b), tc = t(c);
        int m = Math.toIntExact(transA ? ac : ar), k = Math.toIntExact(transA ? ar : ac);
        int kb = Math.toIntExact(transB ? bc : br), n = Math.toIntExact(transB ? br : bc);
        if (kb != k || cr != m || cc != n)
            throw new IllegalArgumentException("GEMM shapes do not agree: op(A) " + m + "x" + k + ", op(B) " + kb + "x" + n
                    + ", C " + cr + "x" + cc + " (A " + a.shape() + (transA ? "^T" : "") + ", B " + b.shape() + (transB ? "^T" : "") + ", C " + c.shape() + ")");
        if (a == c || b == c) throw new IllegalArgumentException("GEMM output must not alias an input");
        if ((long) m * n == 0 || batch == 0) return;
        if (k == 0 || alpha == 0) { // C = beta * C, as the CPU reference (beta = 0 clears NaNs too)
            if (beta == 0) be.zero(tc, c.dtype().byteSize(c.numel()));
            else if (beta != 1) scale(c, beta);
            return;
        }
        if (low == null && batch == 1 && splitsLowRank() && lowRankSplit(transA, transB, alpha, a, b, beta, c, m, n, k)) return;
        Precision p = Precision.of(a, b, c);
        if (cfg.cpuGemm() && p == Precision.FLOAT && c.dtype() == DType.F32
                && cpuGemm(transA, transB, alpha, beta, ta, tb, tc, batch, m, n, k, ar * ac, br * bc, cr * cc)) return;
        if (cfg.tensorCores() && p == Precision.FLOAT && a.dtype() == DType.BF16 && b.dtype() == DType.BF16
                && (c.dtype() == DType.F32 || c.dtype() == DType.BF16)) {
            tensorCoreGemm(transA, transB, alpha, beta, a, b, c, ta, tb, tc, batch, m, n, k, ar * ac, br * bc, cr * cc, low);
            return;
        }
        if (low != null) throw new IllegalStateException("a low-rank pair reached a GEMM path that cannot add it");
        int side = cfg.gemmSide(), tile = cfg.gemmTile();
        be.require(p);
        gemmArguments(new Launch(be, be.library().gemmKernel(p, a.dtype(), b.dtype(), c.dtype()), p), transA, transB, alpha, beta,
                ta, tb, tc, batch, m, n, k, ar * ac, br * bc, cr * cc)
                .profileAs(gemmProfileName("gemm", a, b, c, transA, transB, batch, m, n, k))
                .run(new long[]{(long) Math.ceilDiv(n, tile) * side, (long) Math.ceilDiv(m, tile) * side, batch},
                        new long[]{side, side, 1});
    }

    /**
     * A BF16 x BF16 product on gemm_mma.cl, or gemm_wgmma.cl where the configuration says so (compute capability 9.0;
     * the same tiles, split-K and epilogue). Where its C tiles would not fill the GPU (fewer than its compute units) and
     * K is long, K is split into ranges (each at least {@link LaunchConfig#MMA_SPLIT_MIN_K}, aiming at two work-groups
     * per compute unit) whose fp32 partial products gemm_splitk_sum adds in order: LoRA's rank-16 gradient products
     * (16 x 2048 from K = 8192 tokens) ran 16 work-groups on a 132-unit H200 at ~1 ms each before.
     */
    private void tensorCoreGemm(boolean transA, boolean transB, double alpha, double beta, Tensor a, Tensor b, Tensor c,
                                OpenClTensor ta, OpenClTensor tb, OpenClTensor tc, int batch, int m, int n, int k,
                                long aSize, long bSize, long cSize, LowRank low) {
        if (low == null && batch == 1 && cfg.wgmma() && LaunchConfig.NARROW_GEMM
                && (n <= LaunchConfig.NARROW_MAX || m <= LaunchConfig.NARROW_MAX)) {
            narrowGemm(transA, transB, alpha, beta, a, b, c, ta, tb, tc, m, n, k);
            return;
        }
        int t = LaunchConfig.MMA_TILE;
        long tiles = (long) Math.ceilDiv(m, t) * Math.ceilDiv(n, t) * batch;
        int units = be.device().computeUnits();
        int splits = 1, kSplit = k;
        if (tiles < units && k >= 2 * LaunchConfig.MMA_SPLIT_MIN_K) {
            kSplit = kRange(k, (int) Math.min(Math.ceilDiv(2L * units, tiles), k / LaunchConfig.MMA_SPLIT_MIN_K));
            splits = Math.ceilDiv(k, kSplit);
        }
        String kernel = cfg.wgmma() ? "gemm_wgmma" : "gemm_mma";
        int threads = cfg.wgmma() ? LaunchConfig.WGMMA_THREADS : LaunchConfig.MMA_THREADS;
        long[] local = {threads, 1, 1};
        if (splits == 1) {
            lowRankArguments(gemmArguments(new Launch(be, be.library().mmaGemmKernel(c.dtype(), transA, transB, kernel), Precision.FLOAT),
                    transA, transB, alpha, beta, ta, tb, tc, batch, m, n, k, aSize, bSize, cSize).i32(k).i32(1), low, ta, tb, c.dtype())
                    .profileAs(gemmProfileName(kernel + (low != null ? " +lowrank" : ""), a, b, c, transA, transB, batch, m, n, k))
                    .run(new long[]{(long) Math.ceilDiv(n, t) * threads, Math.ceilDiv(m, t), batch}, local);
            return;
        }
        long mn = (long) m * n;
        try (OpenClTensor part = be.scratch(Precision.FLOAT, batch * splits * mn)) {
            // the partials of C tile z = (batch, range) at z * mn, also for a single product
            lowRankArguments(gemmArguments(new Launch(be, be.library().mmaGemmKernel(DType.F32, transA, transB, kernel), Precision.FLOAT),
                    transA, transB, 1, 0, ta, batch == 1 ? 0 : aSize, tb, batch == 1 ? 0 : bSize, part, mn, m, n, k)
                    .i32(kSplit).i32(splits), low, ta, tb, c.dtype())
                    .profileAs(gemmProfileName(kernel + (low != null ? " +lowrank" : "") + " split " + splits, a, b, c, transA, transB, batch, m, n, k))
                    .run(new long[]{(long) Math.ceilDiv(n, t) * threads, Math.ceilDiv(m, t), (long) batch * splits}, local);
            splitSum(c.dtype(), transA, transB, part, splits, mn, batch, alpha, beta, tc, batch == 1 ? 0 : cSize);
        }
    }

    /**
     * A product with N or M at most {@link LaunchConfig#NARROW_MAX} on gemm_wgmma_narrow (LoRA's rank-16 products and
     * gradients): for M <= 16 < N, C^T = op(B)^T op(A)^T is computed and stored transposed. K is split so that the
     * work-groups (64 rows each) cover the GPU about four times over, the partials summed in order as gemm_mma's.
     */
    private void narrowGemm(boolean transA, boolean transB, double alpha, double beta, Tensor a, Tensor b, Tensor c,
                            OpenClTensor ta, OpenClTensor tb, OpenClTensor tc, int m, int n, int k) {
        boolean transC = n > LaunchConfig.NARROW_MAX;
        String what = gemmProfileName("gemm_wgmma_narrow" + (transC ? " C^T" : ""), a, b, c, transA, transB, 1, m, n, k);
        if (transC) { // C^T = op(B)^T op(A)^T: B^T's transposition flag is !transB, and so on
            OpenClTensor tt = ta; ta = tb; tb = tt;
            boolean f = transA; transA = !transB; transB = !f;
            int d = m; m = n; n = d;
        }
        int tiles = Math.ceilDiv(m, LaunchConfig.NARROW_ROWS);
        int kSplit = kRange(k, Math.max(1, Math.min(Math.ceilDiv(4 * be.device().computeUnits(), tiles), k / LaunchConfig.MMA_SPLIT_MIN_K)));
        int splits = Math.ceilDiv(k, kSplit);
        long mn = (long) m * n;
        long[] global = {(long) tiles * LaunchConfig.NARROW_THREADS, splits, 1}, local = {LaunchConfig.NARROW_THREADS, 1, 1};
        if (splits == 1) {
            narrowLaunch(c.dtype(), transA, transB, m, n, k, alpha, beta, ta, tb, tc, 0, transC, kSplit).profileAs(what).run(global, local);
            return;
        }
        try (OpenClTensor part = be.scratch(Precision.FLOAT, splits * mn)) {
            narrowLaunch(DType.F32, transA, transB, m, n, k, 1, 0, ta, tb, part, mn, transC, kSplit)
                    .profileAs(what == null ? null : what.replaceFirst(" ", " split " + splits + " ")).run(global, local);
            // the sum from the partials' program where C is F32 (the gradients), else the narrow launch's own
            splitSum(c.dtype(), transA, transB, part, splits, mn, 1, alpha, beta, tc, 0);
        }
    }

    /** K range of a split product cut into about {@code ranges} pieces: a multiple of the kernels' 32-column slices. */
    private static int kRange(int k, int ranges) {
        return Math.ceilDiv(Math.ceilDiv(k, ranges), 32) * 32;
    }

    /** The low-rank pair's arguments of gemm_mma / gemm_wgmma (none: lowK 0, A and B as placeholders). */
    private static Launch lowRankArguments(Launch l, LowRank low, OpenClTensor ta, OpenClTensor tb, DType c) {
        return l.tensor(low != null ? low.l() : ta).tensor(low != null ? low.r() : tb).i32(low != null ? low.k() : 0)
                .real(low != null ? low.factor() : 1).flag(low != null && c == DType.BF16);
    }

    /** C[b] = alpha * (the splits' F32 partials of C tile b, summed in order) + beta * C[b], for {@code batch} tiles of mn. */
    private void splitSum(DType c, boolean transA, boolean transB, OpenClTensor part, int splits, long mn, int batch, double alpha,
                          double beta, OpenClTensor tc, long cStride) {
        new Launch(be, be.library().mmaGemmKernel(c, transA, transB, "gemm_splitk_sum"), Precision.FLOAT).scratch(part).i32(splits)
                .i64(mn).i64(batch * mn).real(alpha).real(beta).tensor(tc).i64(cStride).run(batch * mn, cfg.simpleGroup());
    }

    private Launch narrowLaunch(DType cType, boolean transA, boolean transB, int m, int n, int k, double alpha, double beta,
                                OpenClTensor a, OpenClTensor b, OpenClTensor c, long strideC, boolean transC, int kSplit) {
        return new Launch(be, be.library().mmaGemmKernel(cType, transA, transB, "gemm_wgmma_narrow"), Precision.FLOAT)
                .i32(m).i32(n).i32(k).flag(transA).real(alpha).real(beta).quantTensor(a).tensor(b).tensor(c).i64(strideC)
                .flag(transC).i32(kSplit);
    }

    /** With the profiler on, GEMMs are summed by kernel, types and shape; null (the kernel's name) when it is off. */
    private String gemmProfileName(String kernel, Tensor a, Tensor b, Tensor c, boolean transA, boolean transB, int batch,
                                   int m, int n, int k) {
        if (be.profiler() == null) return null;
        return kernel + " " + a.dtype() + (transA ? "^T" : "") + "x" + b.dtype() + (transB ? "^T" : "") + "->" + c.dtype()
                + " m=" + m + " n=" + n + " k=" + k + (batch > 1 ? " batch=" + batch : "");
    }

    /** The arguments gemm.cl's and gemm_mma.cl's kernels share: shapes, flags, scalars, operands and batch strides. */
    private static Launch gemmArguments(Launch l, boolean transA, boolean transB, double alpha, double beta, OpenClTensor ta,
                                        OpenClTensor tb, OpenClTensor tc, int batch, int m, int n, int k, long aSize, long bSize,
                                        long cSize) {
        return gemmArguments(l, transA, transB, alpha, beta, ta, batch == 1 ? 0 : aSize, tb, batch == 1 ? 0 : bSize,
                tc, batch == 1 ? 0 : cSize, m, n, k);
    }

    private static Launch gemmArguments(Launch l, boolean transA, boolean transB, double alpha, double beta, OpenClTensor ta,
                                        long strideA, OpenClTensor tb, long strideB, OpenClTensor tc, long strideC, int m, int n,
                                        int k) {
        return l.i32(m).i32(n).i32(k).flag(transA).flag(transB).real(alpha).real(beta)
                .quantTensor(ta).i64(strideA).quantTensor(tb).i64(strideB).tensor(tc).i64(strideC);
    }

    /**
     * A product into an F32 C on a CPU device, on the register-blocked kernels of gemm_cpu.cl (one work-item per C
     * block); false when it does not take it (an operand copy over {@link LaunchConfig#CPU_COPY_MAX_FLOATS}), and the
     * tiled kernel runs instead. An A that is not F32 is widened into an F32 copy first; a B that is not F32, or is
     * transposed, is copied to F32 [K, N] (transposed while copying) and goes through gemm_nn, except an F32 B^T under
     * {@link LaunchConfig#CPU_TRANSPOSE_MIN_M} rows of C, which gemm_nt reads in place (the copy would outweigh the
     * product). On PoCL, 2048^3: gemm_nt 16.4 GFLOP/s, copy + gemm_nn 31; before, every product with a bf16 weight went
     * to the tiled GPU kernel (81% of a llama-25m step).
     */
    private boolean cpuGemm(boolean transA, boolean transB, double alpha, double beta, OpenClTensor ta, OpenClTensor tb,
                            OpenClTensor tc, int batch, int m, int n, int k, long aSize, long bSize, long cSize) {
        boolean aCopy = ta.dtype() != DType.F32, bF32 = tb.dtype() == DType.F32;
        boolean ntInPlace = transB && bF32 && !transA && m < LaunchConfig.CPU_TRANSPOSE_MIN_M;
        boolean bCopy = !ntInPlace && (transB || !bF32);
        if ((aCopy && (long) batch * aSize > LaunchConfig.CPU_COPY_MAX_FLOATS)
                || (bCopy && (long) batch * bSize > LaunchConfig.CPU_COPY_MAX_FLOATS)) return false;
        try (OpenClTensor a32 = aCopy ? be.scratch(Precision.FLOAT, batch * aSize) : null;
             OpenClTensor b32 = bCopy ? be.scratch(Precision.FLOAT, batch * bSize) : null) {
            if (aCopy) copy(ta, a32); // widened by ew_copy (a32 holds ta's batch * aSize elements)
            if (bCopy && transB) {
                new Launch(be, be.library().cpuGemmKernel("transpose_b"), Precision.FLOAT).i32(n).i32(k)
                        .quantTensor(tb).i64(batch == 1 ? 0 : bSize).scratch(b32)
                        .run(new long[]{Math.ceilDiv(k, 8), n, batch}, null);
            } else if (bCopy) {
                copy(tb, b32);
            }
            cpuGemmLaunch(ntInPlace, transA, alpha, beta, aCopy ? a32 : ta, bCopy ? b32 : tb, tc, batch, m, n, k, aSize,
                    bCopy ? (long) k * n : bSize, cSize);
        }
        return true;
    }

    private void cpuGemmLaunch(boolean nt, boolean transA, double alpha, double beta, OpenClTensor ta, OpenClTensor tb,
                               OpenClTensor tc, int batch, int m, int n, int k, long aSize, long bSize, long cSize) {
        Launch l = new Launch(be, be.library().cpuGemmKernel(nt ? "gemm_nt" : "gemm_nn"), Precision.FLOAT)
                .i32(m).i32(n).i32(k);
        if (!nt) l.flag(transA);
        l.real(alpha).real(beta)
                .tensor(ta).i64(batch == 1 ? 0 : aSize)
                .tensor(tb).i64(batch == 1 ? 0 : bSize)
                .tensor(tc).i64(batch == 1 ? 0 : cSize)
                .run(new long[]{Math.ceilDiv(n, nt ? LaunchConfig.CPU_NT_COLS : LaunchConfig.CPU_NN_COLS),
                        Math.ceilDiv(m, nt ? LaunchConfig.CPU_NT_ROWS : LaunchConfig.CPU_NN_ROWS), batch}, null);
    }

    // ---------------------------------------------------------------- norms and activations

    @Override
    public void rmsNormForward(Tensor x, Tensor weight, double eps, Tensor y, Tensor rstd) {
        requireFloating(x, weight, y, rstd);
        KernelArguments.checkRmsNormForward(x, weight, y, rstd);
        int d = x.shape().cols();
        int n = Math.toIntExact(x.shape().rows());
        Launch wide = d % 8 == 0 && rstd.dtype() != DType.F64 ? bf16x8("rmsnorm_forward", x, weight, y) : null;
        (wide != null ? wide : launch("rmsnorm_forward", x, weight, y, rstd)).i32(d).real(eps)
                .tensor(t(x)).tensor(t(weight)).tensor(t(y)).tensor(t(rstd))
                .run((long) n * cfg.reductionGroup(), cfg.reductionGroup());
    }

    @Override
    public void rmsNormBackward(Tensor dy, Tensor x, Tensor weight, Tensor rstd, Tensor dx, Tensor dWeight) {
        requireFloating(dy, x, weight, rstd, dx, dWeight);
        KernelArguments.checkRmsNormBackward(dy, x, weight, rstd, dx, dWeight);
        int d = x.shape().cols();
        int n = Math.toIntExact(x.shape().rows());
        Launch wide = d % 8 == 0 && rstd.dtype() != DType.F64 ? bf16x8("rmsnorm_backward", dy, x, weight, dx) : null;
        (wide != null ? wide : launch("rmsnorm_backward", dy, x, weight, rstd, dx)).i32(d)
                .tensor(t(dy)).tensor(t(x)).tensor(t(weight)).tensor(t(rstd)).tensor(t(dx))
                .run((long) n * cfg.reductionGroup(), cfg.reductionGroup());
        if (dWeight != null && n > 0 && d > 0) {
            Precision p = Precision.of(dy, x, rstd, dWeight);
            int chunks = Math.ceilDiv(n, LaunchConfig.COLSUM_ROWS);
            try (OpenClTensor partial = be.scratch(p, (long) chunks * d)) {
                launch("rmsnorm_dweight_partial", dy, x, rstd, dWeight).i32(n).i32(d)
                        .tensor(t(dy)).tensor(t(x)).tensor(t(rstd)).scratch(partial)
                        .run(new long[]{Launch.roundUp(d, cfg.simpleGroup()), chunks}, new long[]{cfg.simpleGroup(), 1});
                columnSumFinal(p, partial, chunks, d, true, dWeight);
            }
        }
    }

    private void columnSumFinal(Precision p, OpenClTensor partial, int chunks, int cols, boolean accumulate, Tensor out) {
        new Launch(be, be.library().kernel(p, "colsum_final"), p).i32(chunks).i32(cols).flag(accumulate)
                .scratch(partial).tensor(t(out)).run(cols, cfg.simpleGroup());
    }

    @Override
    public void rope(Tensor x, Tensor cos, Tensor sin, int heads, boolean inverse) {
        requireFloating(x, cos, sin);
        int half = KernelArguments.checkRope(x, cos, sin, heads) / 2;
        int n = Math.toIntExact(x.shape().rows());
        Launch wide = half % 8 == 0 && cos.dtype() != DType.F64 && sin.dtype() != DType.F64 ? bf16x8("rope", x) : null;
        if (wide != null) {
            wide.i32(n).i32(heads).i32(half).flag(inverse).tensor(t(x)).tensor(t(cos)).tensor(t(sin))
                    .run((long) n * heads * (half / 8), cfg.simpleGroup());
            return;
        }
        launch("rope", x, cos, sin).i32(n).i32(heads).i32(half).flag(inverse)
                .tensor(t(x)).tensor(t(cos)).tensor(t(sin))
                .run((long) n * heads * half, cfg.simpleGroup());
    }

    @Override
    public void swigluForward(Tensor gate, Tensor up, Tensor out) {
        requireFloating(gate, up, out);
        KernelArguments.checkSameNumel("SwiGLU operand", gate, up, out);
        elementwise("swiglu_forward", gate.numel(), gate, up, out);
    }

    @Override
    public void swigluBackward(Tensor dOut, Tensor gate, Tensor up, Tensor dGate, Tensor dUp) {
        requireFloating(dOut, gate, up, dGate, dUp);
        KernelArguments.checkSameNumel("SwiGLU operand", gate, dOut, up, dGate, dUp);
        elementwise("swiglu_backward", gate.numel(), dOut, gate, up, dGate, dUp);
    }

    // ---------------------------------------------------------------- attention

    private void checkAttention(AttentionDims d, Tensor q, Tensor k, Tensor v, Tensor segments, Tensor lse) {
        KernelArguments.checkAttention(d, q, k, v, segments, lse);
    }

    @Override
    public void attentionForward(AttentionDims d, Tensor q, Tensor k, Tensor v, Tensor segments, double scale, Tensor out, Tensor lse) {
        checkAttention(d, q, k, v, segments, lse);
        requireNumel(out, d.queryElements(), "attention out");
        attention.forward(d, t(q), t(k), t(v), segments == null ? null : t(segments), scale, t(out), t(lse));
    }

    @Override
    public void attentionBackward(AttentionDims d, Tensor dOut, Tensor q, Tensor k, Tensor v, Tensor segments, double scale,
                                  Tensor out, Tensor lse, Tensor dq, Tensor dk, Tensor dv) {
        checkAttention(d, q, k, v, segments, lse);
        KernelArguments.checkAttentionBackward(d, dOut, out, dq, dk, dv);
        attention.backward(d, t(dOut), t(q), t(k), t(v), segments == null ? null : t(segments), scale, t(out), t(lse),
                t(dq), t(dk), t(dv));
    }

    // ---------------------------------------------------------------- loss

    @Override
    public void crossEntropyForward(Tensor logits, Tensor labels, int ignoreIndex, Tensor loss, Tensor lse) {
        requireFloating(logits, loss, lse);
        int n = KernelArguments.checkCrossEntropyForward(be, logits, labels, ignoreIndex, loss, lse).length;
        launch("cross_entropy_forward", logits, loss, lse).i32(logits.shape().cols()).i32(ignoreIndex)
                .tensor(t(logits)).ints(t(labels)).tensor(t(loss)).tensor(t(lse))
                .run((long) n * cfg.reductionGroup(), cfg.reductionGroup());
    }

    @Override
    public void crossEntropyBackward(Tensor logits, Tensor labels, Tensor lse, int ignoreIndex, double scale, Tensor dLogits) {
        requireFloating(logits, lse, dLogits);
        KernelArguments.checkCrossEntropyBackward(be, logits, labels, lse, ignoreIndex, dLogits);
        launch("cross_entropy_backward", logits, lse, dLogits).i64(logits.numel()).i32(logits.shape().cols())
                .i32(ignoreIndex).real(scale)
                .tensor(t(logits)).ints(t(labels)).tensor(t(lse)).tensor(t(dLogits))
                .run(logits.numel(), cfg.simpleGroup());
    }

    // ---------------------------------------------------------------- embedding

    @Override
    public void embeddingForward(Tensor table, Tensor ids, Tensor out) {
        requireFloating(table, out);
        int[] idv = KernelArguments.checkEmbedding(be, table, ids, out, "embedding output");
        int dim = table.shape().cols();
        launch("embedding_forward", table, out).i64(out.numel()).i32(dim)
                .tensor(t(table)).ints(t(ids)).tensor(t(out))
                .run(out.numel(), cfg.simpleGroup());
    }

    @Override
    public void embeddingBackward(Tensor dOut, Tensor ids, Tensor dTable) {
        requireFloating(dOut, dTable);
        int[] idv = KernelArguments.checkEmbedding(be, dTable, ids, dOut, "embedding dOut");
        int dim = dTable.shape().cols();
        if (idv.length == 0 || dim == 0) return;
        // group the positions by id, ascending position within a group (a stable sort of (id, position) pairs)
        long[] keyed = new long[idv.length];
        for (int i = 0; i < idv.length; i++) keyed[i] = ((long) idv[i] << 32) | i;
        Arrays.sort(keyed);
        int[] order = new int[idv.length];
        int[] start = new int[idv.length + 1];
        int groups = 0;
        for (int p = 0; p < keyed.length; p++) {
            order[p] = (int) keyed[p];
            if (p == 0 || (keyed[p] >>> 32) != (keyed[p - 1] >>> 32)) start[groups++] = p;
        }
        start[groups] = idv.length;
        try (Tensor orderT = be.uploadInts(Shape.of(order.length), order);
             Tensor startT = be.uploadInts(Shape.of(groups + 1), Arrays.copyOf(start, groups + 1))) {
            launch("embedding_backward", dOut, dTable).i64((long) groups * dim).i32(dim)
                    .tensor(t(dOut)).ints(t(ids)).ints(t(orderT)).ints(t(startT)).tensor(t(dTable))
                    .run((long) groups * dim, cfg.simpleGroup());
        }
    }

    // ---------------------------------------------------------------- optimizer and elementwise

    @Override
    public void adamw(Tensor param, Tensor grad, Tensor m, Tensor v, AdamWStep s) {
        requireFloating(param, grad, m, v);
        KernelArguments.checkSameNumel("AdamW operand", param, grad, m, v);
        double decay = 1 - s.lr() * s.weightDecay();
        double bc1 = 1 - Math.pow(s.beta1(), s.step());
        double bc2Sqrt = Math.sqrt(1 - Math.pow(s.beta2(), s.step()));
        launch("adamw", param, grad, m, v).i64(param.numel())
                .real(decay).real(1 - s.beta1()).real(s.beta2()).real(1 - s.beta2()).real(bc2Sqrt).real(s.eps()).real(s.lr() / bc1)
                .tensor(t(param)).tensor(t(grad)).tensor(t(m)).tensor(t(v))
                .run(param.numel(), cfg.simpleGroup());
    }

    @Override
    public void add(Tensor a, Tensor b, Tensor out) {
        requireFloating(a, b, out);
        requireNumel(b, a.numel(), "add operand");
        requireNumel(out, a.numel(), "add output");
        elementwise("ew_add", a.numel(), a, b, out);
    }

    @Override
    public void axpy(double alpha, Tensor x, Tensor y) {
        requireFloating(x, y);
        requireNumel(y, x.numel(), "axpy y");
        launch("ew_axpy", x, y).i64(x.numel()).real(alpha).tensor(t(x)).tensor(t(y)).run(x.numel(), cfg.simpleGroup());
    }

    @Override
    public void scale(Tensor x, double alpha) {
        requireFloating(x);
        launch("ew_scale", x).i64(x.numel()).real(alpha).tensor(t(x)).run(x.numel(), cfg.simpleGroup());
    }

    @Override
    public void dropoutMask(Tensor x, double p, long seed, Tensor out) {
        KernelArguments.checkDropoutMask(x, p, out);
        if (x.numel() == 0) return;
        launch("ew_dropout_mask", x, out).i64(x.numel()).i64(seed).i32(Dropout.threshold(p)).tensor(t(x)).tensor(t(out))
                .run(x.numel(), cfg.simpleGroup());
    }

    @Override
    public void fill(Tensor x, double value) {
        if (x.dtype() == DType.I32 && value == 0) {
            be.zero(t(x), x.dtype().byteSize(x.numel()));
            return;
        }
        requireFloating(x);
        launch("ew_fill", x).i64(x.numel()).real(value).tensor(t(x)).run(x.numel(), cfg.simpleGroup());
    }

    @Override
    public void copy(Tensor src, Tensor dst) {
        requireNumel(dst, src.numel(), "copy destination");
        if (src.dtype() == dst.dtype() && src.dtype() != DType.NF4) {
            be.copyBytes(t(src), t(dst), src.dtype().byteSize(src.numel()));
            return;
        }
        requireFloating(dst);
        OpenClTensor s = readable(src);
        launch("ew_copy", src, dst).i64(src.numel()).quantTensor(s).tensor(t(dst)).run(src.numel(), cfg.simpleGroup());
    }

    @Override
    public void addRowVector(Tensor x, Tensor bias) {
        requireFloating(x, bias);
        requireNumel(bias, x.shape().cols(), "bias");
        launch("ew_add_row_vector", x, bias).i64(x.numel()).i32(x.shape().cols()).tensor(t(x)).tensor(t(bias))
                .run(x.numel(), cfg.simpleGroup());
    }

    @Override
    public void sumRows(Tensor x, Tensor out, boolean accumulate) {
        requireFloating(x, out);
        int cols = x.shape().cols();
        requireNumel(out, cols, "sumRows output");
        int rows = Math.toIntExact(x.shape().rows());
        if (cols == 0) return;
        Precision p = Precision.of(x, out);
        be.require(p);
        int chunks = Math.max(1, Math.ceilDiv(rows, LaunchConfig.COLSUM_ROWS));
        try (OpenClTensor partial = be.scratch(p, (long) chunks * cols)) {
            if (rows == 0) be.zero(partial, (long) p.bytes() * cols);
            else launch("colsum_partial", x, out).i32(rows).i32(cols).tensor(t(x)).scratch(partial)
                    .run(new long[]{Launch.roundUp(cols, cfg.simpleGroup()), chunks}, new long[]{cfg.simpleGroup(), 1});
            columnSumFinal(p, partial, chunks, cols, accumulate, out);
        }
    }

    @Override
    public double sumOfSquares(Tensor x) {
        requireFloating(x);
        OpenClTensor tx = t(x);
        long n = x.numel();
        if (n == 0) return 0;
        // accumulate in double wherever the device can (the contract's "in double"), else in float pairs of about
        // twice float's precision (reduce.cl's sum_squares_partial_pairs), the groups' pairs added here in double
        int group = cfg.reductionGroup();
        int groups = (int) Math.min(64, Math.ceilDiv(n, group));
        boolean pairs = !be.device().fp64();
        if (pairs) be.require(Precision.of(x)); // an F64 tensor needs doubles to be read at all
        Precision p = pairs ? Precision.FLOAT : Precision.DOUBLE;
        try (OpenClTensor partial = be.scratch(p, pairs ? 2L * groups : groups)) {
            new Launch(be, be.library().kernel(p, pairs ? "sum_squares_partial_pairs" : "sum_squares_partial"), p).i64(n).tensor(tx)
                    .scratch(partial).run((long) groups * group, group);
            double total = 0;
            for (double v : be.download(partial)) total += v;
            return total;
        }
    }
}
