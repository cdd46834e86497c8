/*
 * F32 GEMM for CPU devices (PoCL): C = alpha * op(A) op(B) + beta * C with A, B, C stored as F32 and float compute.
 *
 * CPU OpenCL compilers turn a work-group into a loop over its work-items, so the local-memory tiling of gemm.cl
 * (written for GPUs) costs barriers and buys nothing. Here each work-item holds a register block of C in float8
 * vectors and streams its operands straight from memory, as the CPU backend's microkernel does:
 *   gemm_nn (op(B) = B, any op(A)): a GEMM_RM x 16 block; per k step two float8 loads of B's row and one broadcast
 *            of op(A)[i, p] per row (a transposed A gives the RM values of one stored row, adjacent).
 *   gemm_nt (op(A) = A, op(B) = B^T, the X W^T of a linear layer): a 3 x 4 block of dot products along k, both
 *            operands read as float8 runs of their rows; the eight lanes are summed once at the end.
 *   transpose_b: B stored [N, K] (any storage type) copied to F32 [K, N], so that X W^T runs through gemm_nn (on
 *            PoCL gemm_nt measured 16.4 GFLOP/s at 2048^3 against gemm_nn's 30.1; the copy is K N against the
 *            product's M N K).
 * Rows past M are read clamped to the last row (valid memory) and never stored; a 16-column block that would run
 * past N (gemm_nn) is computed by the scalar edge loop. Batched over the third grid dimension.
 */
#if !defined(GEMM_RM) || !defined(NT_RM) || !defined(NT_CN)
#error "GEMM_RM, NT_RM and NT_CN (the blocks of C per work-item, LaunchConfig.cpuGemmOptions) must be defined"
#endif

#define F32_PTR(n) ((global float *) (n) + n##_off)

kernel void gemm_nn(int M, int N, int K, int transA, float alpha, float beta,
                    TENSOR(A), long strideA, TENSOR(B), long strideB, TENSOR(C), long strideC) {
    const int j0 = get_global_id(0) * 16, i0 = get_global_id(1) * GEMM_RM;
    if (j0 >= N || i0 >= M) return;
    const long batch = get_global_id(2);
    global const float *a = F32_PTR(A) + batch * strideA;
    global const float *b = F32_PTR(B) + batch * strideB;
    global float *c = F32_PTR(C) + batch * strideC;
    /* op(A)[row, p] is a[arow[r] + p * astep]: the transposed/plain choice made once, outside the k loops */
    long arow[GEMM_RM];
    const long astep = transA ? M : 1, apitch = transA ? 1 : K;
    for (int r = 0; r < GEMM_RM; r++) arow[r] = (long) min(i0 + r, M - 1) * apitch;
    if (j0 + 16 <= N) {
        float8 acc0[GEMM_RM], acc1[GEMM_RM];
        for (int r = 0; r < GEMM_RM; r++) {
            acc0[r] = (float8) (0.0f);
            acc1[r] = (float8) (0.0f);
        }
        global const float *brow = b + j0;
        long ap = 0;
        for (int p = 0; p < K; p++, brow += N, ap += astep) {
            const float8 b0 = vload8(0, brow), b1 = vload8(1, brow);
#pragma unroll
            for (int r = 0; r < GEMM_RM; r++) {
                const float av = a[arow[r] + ap];
                acc0[r] = fma((float8) (av), b0, acc0[r]);
                acc1[r] = fma((float8) (av), b1, acc1[r]);
            }
        }
        for (int r = 0; r < GEMM_RM && i0 + r < M; r++) {
            global float *crow = c + (long) (i0 + r) * N + j0;
            float8 v0 = alpha * acc0[r], v1 = alpha * acc1[r];
            if (beta != 0) {
                v0 += beta * vload8(0, crow);
                v1 += beta * vload8(1, crow);
            }
            vstore8(v0, 0, crow);
            vstore8(v1, 1, crow);
        }
        return;
    }
    /* the last, partial column block */
    for (int r = 0; r < GEMM_RM && i0 + r < M; r++) {
        for (int j = j0; j < N; j++) {
            float s = 0;
            for (int p = 0; p < K; p++) {
                s = fma(a[arow[r] + p * astep], b[(long) p * N + j], s);
            }
            const long idx = (long) (i0 + r) * N + j;
            c[idx] = beta != 0 ? alpha * s + beta * c[idx] : alpha * s;
        }
    }
}

kernel void gemm_nt(int M, int N, int K, float alpha, float beta,
                    TENSOR(A), long strideA, TENSOR(B), long strideB, TENSOR(C), long strideC) {
    const int j0 = get_global_id(0) * NT_CN, i0 = get_global_id(1) * NT_RM;
    if (j0 >= N || i0 >= M) return;
    const long batch = get_global_id(2);
    global const float *a = F32_PTR(A) + batch * strideA;
    global const float *b = F32_PTR(B) + batch * strideB;
    global float *c = F32_PTR(C) + batch * strideC;
    global const float *ar[NT_RM], *br[NT_CN];
    for (int r = 0; r < NT_RM; r++) ar[r] = a + (long) min(i0 + r, M - 1) * K;
    for (int q = 0; q < NT_CN; q++) br[q] = b + (long) min(j0 + q, N - 1) * K;
    float8 acc[NT_RM][NT_CN];
    for (int r = 0; r < NT_RM; r++)
        for (int q = 0; q < NT_CN; q++) acc[r][q] = (float8) (0.0f);
    const int k8 = K / 8;
    for (int p = 0; p < k8; p++) {
        float8 bv[NT_CN];
        for (int q = 0; q < NT_CN; q++) bv[q] = vload8(p, br[q]);
        for (int r = 0; r < NT_RM; r++) {
            const float8 av = vload8(p, ar[r]);
            for (int q = 0; q < NT_CN; q++) acc[r][q] = fma(av, bv[q], acc[r][q]);
        }
    }
    for (int r = 0; r < NT_RM && i0 + r < M; r++) {
        for (int q = 0; q < NT_CN && j0 + q < N; q++) {
            const float8 v = acc[r][q];
            float s = ((v.s0 + v.s1) + (v.s2 + v.s3)) + ((v.s4 + v.s5) + (v.s6 + v.s7));
            for (int p = k8 * 8; p < K; p++) s = fma(ar[r][p], br[q][p], s);
            const long idx = (long) (i0 + r) * N + j0 + q;
            c[idx] = beta != 0 ? alpha * s + beta * c[idx] : alpha * s;
        }
    }
}

/*
 * dst[p * N + j] = B[j * K + p] for one matrix of the batch (dst dense F32, K x N per matrix), B in any storage type
 * (bf16, f16 and NF4 widened on load); 8 values of k per work-item.
 */
kernel void transpose_b(int N, int K, QTENSOR(B), long strideB, global float *dst) {
    const int p0 = get_global_id(0) * 8, j = get_global_id(1);
    if (p0 >= K || j >= N) return;
    const long batch = get_global_id(2);
    const long from = batch * strideB + (long) j * K;
    global float *d = dst + batch * (long) K * N + j;
    const int p1 = min(p0 + 8, K);
    for (int p = p0; p < p1; p++) d[(long) p * N] = LDQ(B, from + p);
}
