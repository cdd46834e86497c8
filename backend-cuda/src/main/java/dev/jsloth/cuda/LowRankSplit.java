package dev.jsloth.cuda;

import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;

/**
 * LoRA's rank-r path in F32 on the bf16 tensor-core GEMM ({@link CudaKernels#lowRankType}): the F32 operand of a
 * product (a factor A or B, or a rank-r product XA, dY B, G) is split into bf16 values, {@code v = hi + mid + lo}
 * ({@code hi = bf16(v)}, {@code mid = bf16(v - hi)}, {@code lo = bf16(v - hi - mid)}: F32's 24 significant bits), so
 * cuBLASLt keeps reading the large bf16 operand (X, dY, W) once, as it is, and nothing on the adapter's path is
 * rounded to bf16 before its output:
 * <ul>
 * <li>one F32 operand whose other dimension is a rank (at most {@link #MAX_RANK}; e.g. {@code X A^T}, {@code dY^T XA}):
 * split along that dimension, {@code [op(S_hi) | op(S_mid) | op(S_lo)]}, one product of three times the rank into an
 * F32 scratch, whose parts {@code lowrank_fold_kernel} adds into C (with beta);</li>
 * <li>two F32 operands over a rank-deep K into a bf16 output (the adapter's {@code s (XA) B^T}): K tripled,
 * {@code [L_hi | L_hi | L_mid] [R_hi; R_mid; R_hi]} (what it leaves out is 2^-16 of the product, below the bf16
 * output's rounding), one bf16 product straight into C.</li>
 * </ul>
 */
final class LowRankSplit {
    /**
     * The largest rank (the split dimension) this takes: LoRA's ranks, and stacked ones (Q, K and V's A matrices end to
     * end: three times the rank, so r up to 341); larger products keep the converting F32 path (slow: X converted to
     * F32). The scratch grows with it: 3 x 1024 x tokens F32 partials, 48 MB at 4096 tokens.
     */
    static final int MAX_RANK = 1024;
    private static final int PARTS = 3;
    /** Two bits per part (0 hi, 1 mid, 2 lo): a rank-side split's parts, and a K split's for A and for B. */
    private static final int HI_MID_LO = 0b10_01_00, A_K = 0b01_00_00, B_K = 0b00_01_00;

    private LowRankSplit() {
    }

    /** Whether {@link #multiply} takes this product (one matrix, dense operands, C F32 or BF16). */
    static boolean applies(MatrixRef a, MatrixRef b, ElementType c) {
        if (a.ld() != a.cols() || b.ld() != b.cols() || (c != ElementType.F32 && c != ElementType.BF16)) return false;
        if (a.type() == ElementType.F32 && b.type() == ElementType.BF16) return a.opRows() <= MAX_RANK;
        if (a.type() == ElementType.BF16 && b.type() == ElementType.F32) return b.opCols() <= MAX_RANK;
        return a.type() == ElementType.F32 && b.type() == ElementType.F32 && c == ElementType.BF16 && a.opCols() <= MAX_RANK;
    }

    /** {@code C = alpha op(A) op(B) + beta C} (C dense, m x n), for a product {@link #applies} takes. */
    static void multiply(CudaBackend be, MatrixRef a, MatrixRef b, MatrixRef c, double alpha, double beta) {
        if (a.type() == ElementType.F32 && b.type() == ElementType.F32) {
            try (CudaTensor as = split(be, a, true, A_K); CudaTensor bs = split(be, b, false, B_K)) {
                be.blas.multiply(along(as, a, true), along(bs, b, false), c, alpha, beta, 1, 0, 0, 0);
            }
            return;
        }
        boolean splitA = a.type() == ElementType.F32;
        MatrixRef s = splitA ? a : b;
        long m = a.opRows(), n = b.opCols();
        // op(S) gains rows (S is A: [hi; mid; lo]) or columns (S is B: [hi | mid | lo]): stored, the copies one after the
        // other or each row's side by side, as S is stored plain or transposed; the partial products likewise
        boolean sideBySide = splitA == s.trans();
        try (CudaTensor partials = be.allocateUninitialized(DType.F32, Shape.of(Math.toIntExact(PARTS * m * n)));
             CudaTensor parts = copies(be, s, sideBySide, HI_MID_LO)) {
            MatrixRef split = sideBySide ? MatrixRef.dense(parts.address(), ElementType.BF16, s.rows(), PARTS * s.cols(), s.trans())
                    : MatrixRef.dense(parts.address(), ElementType.BF16, PARTS * s.rows(), s.cols(), s.trans());
            MatrixRef out = splitA ? MatrixRef.dense(partials.address(), ElementType.F32, PARTS * m, n, false)
                    : MatrixRef.dense(partials.address(), ElementType.F32, m, PARTS * n, false);
            be.blas.multiply(splitA ? split : a, splitA ? b : split, out, alpha, 0.0, 1, 0, 0, 0);
            be.kernel(KernelId.LOWRANK_FOLD, c.type()).launch(Grid.linear(m * n), LaunchArgs.of()
                    .ptr(partials.address()).i64(m).i64(n).i32(PARTS).i32(splitA ? 0 : 1).f64(beta).ptr(c.ptr()));
        }
    }

    /**
     * {@code D = alpha op(A) op(B) + C} for two F32 operands over a rank-deep K into a bf16 D (C D's type and shape, read
     * only): false, with nothing done, for any other product.
     */
    static boolean multiplyOnto(CudaBackend be, MatrixRef a, MatrixRef b, long c, MatrixRef d, double alpha) {
        if (a.type() != ElementType.F32 || b.type() != ElementType.F32 || !applies(a, b, d.type())) return false;
        try (CudaTensor as = split(be, a, true, A_K); CudaTensor bs = split(be, b, false, B_K)) {
            be.blas.multiply(along(as, a, true), along(bs, b, false), c, d, alpha, 1.0, 1, 0, 0, 0);
        }
        return true;
    }

    /** An operand's three copies along K (A's columns hi, hi, mid; B's rows hi, mid, hi). */
    private static CudaTensor split(CudaBackend be, MatrixRef x, boolean isA, int select) {
        return copies(be, x, kSideBySide(x, isA), select);
    }

    /** Whether K is a stored column of the operand (A plain, B transposed): its copies along K then lie side by side. */
    private static boolean kSideBySide(MatrixRef x, boolean isA) {
        return isA != x.trans();
    }

    /** {@link #PARTS} bf16 copies of a dense F32 matrix as {@code lowrank_split_kernel} lays them out. */
    private static CudaTensor copies(CudaBackend be, MatrixRef x, boolean sideBySide, int select) {
        CudaTensor out = be.allocateUninitialized(DType.BF16, Shape.of(Math.toIntExact(PARTS * x.rows() * x.cols())));
        try {
            be.kernel(KernelId.LOWRANK_SPLIT, ElementType.F32).launch(Grid.linear(x.rows() * x.cols()), LaunchArgs.of()
                    .ptr(x.ptr()).i64(x.rows()).i64(x.cols()).i32(PARTS).i32(select).i32(sideBySide ? 1 : 0).ptr(out.address()));
            return out;
        } catch (RuntimeException | Error e) {
            out.close();
            throw e;
        }
    }

    /** The view of {@link #split}'s copies as the operand with K tripled. */
    private static MatrixRef along(CudaTensor t, MatrixRef x, boolean isA) {
        return kSideBySide(x, isA) ? MatrixRef.dense(t.address(), ElementType.BF16, x.rows(), PARTS * x.cols(), x.trans())
                : MatrixRef.dense(t.address(), ElementType.BF16, PARTS * x.rows(), x.cols(), x.trans());
    }
}
