package dev.jsloth.cuda;

import dev.jsloth.api.DType;
import dev.jsloth.api.Shape;

/**
 * GEMM on the device. C's type decides the compute precision, as on the CPU: an F64 C computes in F64, any other
 * in F32. Operands that cuBLASLt takes as they are go straight to it; any other operand (NF4, or a type that
 * differs from the other operand's) is converted to the compute type first, tile by tile along its stored rows
 * when it is large ({@link GemmTiling}), so a dequantized weight never exists whole. A 16-bit C that cuBLASLt
 * cannot produce from the operands is accumulated in an F32 scratch and rounded once. LoRA's F32 rank-r operands
 * beside bf16 ones run on the bf16 GEMM as hi/mid/lo parts ({@link LowRankSplit}).
 */
final class GemmOp {
    /** Default elements of a converted operand kept at once (one tile); {@code -Djsloth.cuda.gemmTileElements} overrides. */
    static final long TILE_ELEMENTS = Long.getLong("jsloth.cuda.gemmTileElements", 32L << 20);

    private final CudaBackend be;
    private volatile long tileElements = TILE_ELEMENTS;

    GemmOp(CudaBackend be) {
        this.be = be;
    }

    /** Sets the tile size in elements (tests use tiny tiles to exercise the tiled path). */
    void tileElements(long elements) {
        if (elements <= 0) throw new IllegalArgumentException("tile size must be positive");
        this.tileElements = elements;
    }

    /** An operand as given: its tensor and its matrix view (type null for NF4). */
    private record Operand(CudaTensor tensor, MatrixRef ref) {
        DType dtype() {
            return tensor.dtype();
        }
    }

    private static Operand operand(CudaTensor t, long base, long rows, long cols, boolean trans) {
        ElementType type = t.dtype() == DType.NF4 ? null : ElementType.of(t.dtype());
        long ptr = type == null ? t.address() : t.address() + base * type.bytes;
        return new Operand(t, MatrixRef.dense(ptr, type, rows, cols, trans));
    }

    /**
     * {@code C = alpha op(A) op(B) + beta C} over {@code batch} matrices of each operand (shapes already checked):
     * A's matrices are {@code ar x ac}, B's {@code br x bc}, C's {@code m x n}.
     */
    void multiply(boolean transA, boolean transB, double alpha, CudaTensor a, CudaTensor b, double beta, CudaTensor c,
                  int batch, long ar, long ac, long br, long bc) {
        long m = transA ? ac : ar, k = transA ? ar : ac, n = transB ? br : bc;
        if (m == 0 || n == 0 || batch == 0) return;
        ElementType ct = ElementType.of(c.dtype());
        MatrixRef cRef = MatrixRef.dense(c.address(), ct, m, n, false);
        long cCount = m * n * batch;
        if (k == 0 || alpha == 0) {
            if (beta == 0) be.zero(c.address(), cCount * ct.bytes); // beta = 0 ignores C entirely, NaN included
            else if (beta != 1) ElementwiseOps.scale(be, c.address(), ct, beta, cCount);
            return;
        }
        // from here on cuBLASLt writes C; with beta = 0 it does not read it (NaN or garbage in C is ignored)
        Operand oa = operand(a, 0, ar, ac, transA), ob = operand(b, 0, br, bc, transB);
        if (batch == 1 && LowRankSplit.applies(oa.ref(), ob.ref(), ct)) { // LoRA's F32 rank-r path on the bf16 GEMM
            LowRankSplit.multiply(be, oa.ref(), ob.ref(), cRef, alpha, beta);
            return;
        }
        ElementType want = operandType(ct, oa.dtype(), ob.dtype());
        if (want == null) { // a 16-bit C that cuBLASLt cannot write from these operands: accumulate in F32
            try (CudaTensor acc = be.allocateUninitialized(DType.F32, Shape.of(Math.toIntExact(cCount)))) {
                if (beta != 0) Conversions.convert(be, c.address(), ct, acc.address(), ElementType.F32, cCount);
                else be.zero(acc.address(), cCount * ElementType.F32.bytes);
                MatrixRef accRef = MatrixRef.dense(acc.address(), ElementType.F32, m, n, false);
                product(oa, ob, accRef, alpha, beta, batch);
                Conversions.convert(be, acc.address(), ElementType.F32, c.address(), ct, cCount);
            }
            return;
        }
        product(oa, ob, cRef, alpha, beta, batch);
    }

    /**
     * {@code D = alpha op(A) op(B) + C} in one cuBLASLt call, C read (its type and shape D's) and left as it is; false,
     * with nothing done, where this product would need converted operands or a widened D (the caller then adds C
     * itself). Shapes already checked; one matrix each.
     */
    boolean multiplyOnto(boolean transA, boolean transB, double alpha, CudaTensor a, CudaTensor b, CudaTensor c, CudaTensor d,
                         long ar, long ac, long br, long bc) {
        long m = transA ? ac : ar, k = transA ? ar : ac, n = transB ? br : bc;
        if (m == 0 || n == 0 || k == 0 || alpha == 0 || c.dtype() != d.dtype()) return false;
        ElementType dt = ElementType.of(d.dtype());
        Operand oa = operand(a, 0, ar, ac, transA), ob = operand(b, 0, br, bc, transB);
        if (LowRankSplit.multiplyOnto(be, oa.ref(), ob.ref(), c.address(), MatrixRef.dense(d.address(), dt, m, n, false), alpha)) return true;
        ElementType want = operandType(dt, oa.dtype(), ob.dtype());
        if (want == null || oa.ref().type() != want || ob.ref().type() != want) return false;
        MatrixRef dRef = MatrixRef.dense(d.address(), dt, m, n, false);
        be.blas.multiply(oa.ref(), ob.ref(), c.address(), dRef, alpha, 1.0, 1, 0, 0, 0);
        return true;
    }

    /** The operand type cuBLASLt runs with for a C of type {@code c}; null when C itself must be widened to F32. */
    static ElementType operandType(ElementType c, DType a, DType b) {
        if (c == ElementType.F64) return ElementType.F64;
        boolean sameFloating = a == b && a.isFloating() && a != DType.F64;
        if (c == ElementType.F32) return sameFloating ? ElementType.of(a) : ElementType.F32;
        if (sameFloating) return ElementType.of(a) == c ? c : null;
        // a 16-bit C with one NF4 operand (QLoRA) and the other of C's type: dequantize straight to C's type
        boolean aFits = a == DType.NF4 || ElementType.of(a) == c, bFits = b == DType.NF4 || ElementType.of(b) == c;
        return aFits && bFits && (a != DType.NF4 || b != DType.NF4) ? c : null;
    }

    /** C (whose type cuBLASLt can produce from {@code want} operands) = alpha op(A) op(B) + beta C. */
    private void product(Operand a, Operand b, MatrixRef c, double alpha, double beta, int batch) {
        ElementType want = operandType(c.type(), a.dtype(), b.dtype());
        boolean convertA = a.ref().type() != want, convertB = b.ref().type() != want;
        if (!convertA && !convertB) {
            be.blas.multiply(a.ref(), b.ref(), c, alpha, beta, batch, a.ref().stride(), b.ref().stride(), c.stride());
            return;
        }
        if (batch > 1) { // batched products convert whole operands
            try (CudaTensor ca = convertA ? Conversions.copyAs(be, a.tensor(), want, a.tensor().shape()) : null;
                 CudaTensor cb = convertB ? Conversions.copyAs(be, b.tensor(), want, b.tensor().shape()) : null) {
                MatrixRef ra = convertA ? retyped(a.ref(), ca.address(), want) : a.ref();
                MatrixRef rb = convertB ? retyped(b.ref(), cb.address(), want) : b.ref();
                be.blas.multiply(ra, rb, c, alpha, beta, batch, ra.stride(), rb.stride(), c.stride());
            }
            return;
        }
        // tile the larger converted operand; convert the other one whole
        boolean tileA = convertA && (!convertB || a.tensor().numel() >= b.tensor().numel());
        Operand tiled = tileA ? a : b, other = tileA ? b : a;
        boolean convertOther = tileA ? convertB : convertA;
        try (CudaTensor otherCopy = convertOther ? Conversions.copyAs(be, other.tensor(), want, other.tensor().shape()) : null) {
            MatrixRef otherRef = convertOther ? retyped(other.ref(), otherCopy.address(), want) : other.ref();
            MatrixRef ra = tileA ? null : otherRef, rb = tileA ? otherRef : null;
            tiles(tiled, tileA, ra, rb, c, alpha, beta, want);
        }
    }

    /** Tile heights of at least this many rows are a multiple of it ({@link #rowsPerTile}). */
    static final long TILE_ROW_MULTIPLE = 128;

    /**
     * Stored rows a tile of a converted operand ({@code rows x cols}) takes: as many as {@code tileElements} holds,
     * rounded down to a multiple of {@link #TILE_ROW_MULTIPLE} where that leaves at least one multiple. The tiles then
     * start on 256-byte boundaries of C, or of the other operand when they split k, which cuBLASLt's fast (TMA) kernels
     * need: an 8B down projection [4096, 14336] in tiles of 2,340 rows (2,340 + 1,756) left its tiles' products at an
     * 8-byte alignment, and those ran at 227-250 TFLOP/s on the H200 where the 4096- and 8192-row tiles of the other
     * projections ran at ~650 (session 34's profile of the 8B QLoRA step: ~65 ms of its ~410).
     */
    static long rowsPerTile(long rows, long cols, long tileElements) {
        long fit = Math.max(1, Math.min(rows, tileElements / Math.max(1, cols)));
        return fit < rows && fit >= TILE_ROW_MULTIPLE ? fit - fit % TILE_ROW_MULTIPLE : fit;
    }

    /** Runs the product tile by tile over the stored rows of the converted operand {@code x}. */
    private void tiles(Operand x, boolean xIsA, MatrixRef a, MatrixRef b, MatrixRef c, double alpha, double beta,
                       ElementType want) {
        MatrixRef xr = x.ref();
        long rowsPerTile = rowsPerTile(xr.rows(), xr.cols(), tileElements);
        try (CudaTensor scratch = be.allocateUninitialized(want.dtype, Shape.of(Math.toIntExact(rowsPerTile * xr.cols())))) {
            boolean first = true;
            for (long r0 = 0; r0 < xr.rows(); r0 += rowsPerTile) {
                long count = Math.min(rowsPerTile, xr.rows() - r0);
                Conversions.read(be, x.tensor(), r0 * xr.cols(), count * xr.cols(), scratch.address(), want);
                MatrixRef converted = MatrixRef.dense(scratch.address(), want, count, xr.cols(), xr.trans());
                MatrixRef full = retyped(xr, 0, want);
                GemmTiling.Tile t = xIsA ? GemmTiling.ofA(full, b, c, r0, count, converted)
                        : GemmTiling.ofB(a, full, c, r0, count, converted);
                double tileBeta = t.accumulates() && !first ? 1.0 : beta;
                be.blas.multiply(t.a(), t.b(), t.c(), alpha, tileBeta, 1, 0, 0, 0);
                first = false;
            }
        }
    }

    private static MatrixRef retyped(MatrixRef r, long ptr, ElementType type) {
        return new MatrixRef(ptr, type, r.rows(), r.cols(), r.ld(), r.trans());
    }
}
