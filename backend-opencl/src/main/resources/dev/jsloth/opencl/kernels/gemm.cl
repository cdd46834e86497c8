/*
 * C = alpha * op(A) op(B) + beta * C, batched over the third grid dimension.
 *
 * Each work-group computes a GEMM_TS x GEMM_TS tile of C with (GEMM_TS/GEMM_WPT)^2 work-items, each holding a
 * GEMM_WPT x GEMM_WPT block of accumulators in registers. op(A) and op(B) are staged through local memory
 * GEMM_TK columns/rows at a time; the staging loads read any storage type (F32, F64, BF16, F16, NF4) and apply
 * the transpose, choosing the element order that keeps consecutive work-items on consecutive addresses. A
 * work-item's rows and columns are strided by GEMM_RTS so that its stores to C coalesce. Accumulation is in
 * `real` (double when an operand is F64); with beta == 0 the old C is never read.
 *
 * The program is built per combination of storage types (GEMM_A_DT, GEMM_B_DT, GEMM_C_DT): with the types known
 * at compile time the conversions reduce to a load and a widening, with no per-element dispatch.
 */
#if !defined(GEMM_A_DT) || !defined(GEMM_B_DT) || !defined(GEMM_C_DT)
#error "GEMM_A_DT, GEMM_B_DT and GEMM_C_DT (storage type codes) must be defined"
#endif
#ifndef GEMM_TS
#define GEMM_TS 64
#endif
#ifndef GEMM_TK
#define GEMM_TK 16
#endif
#ifndef GEMM_WPT
#define GEMM_WPT 4
#endif
#define GEMM_RTS (GEMM_TS / GEMM_WPT)
#define GEMM_THREADS (GEMM_RTS * GEMM_RTS)
#define GEMM_LOADS ((GEMM_TS * GEMM_TK) / GEMM_THREADS)

__attribute__((reqd_work_group_size(GEMM_RTS, GEMM_RTS, 1)))
kernel void gemm(int M, int N, int K, int transA, int transB, real alpha, real beta,
                 QTENSOR(A), long strideA, QTENSOR(B), long strideB, TENSOR(C), long strideC) {
    local real As[GEMM_TK][GEMM_TS + 1];
    local real Bs[GEMM_TK][GEMM_TS + 1];

    const int tx = get_local_id(0), ty = get_local_id(1);
    const int tid = ty * GEMM_RTS + tx;
    const int col0 = get_group_id(0) * GEMM_TS, row0 = get_group_id(1) * GEMM_TS;
    const long batch = get_global_id(2);
    const long aBase = batch * strideA, bBase = batch * strideB, cBase = batch * strideC;

    real acc[GEMM_WPT][GEMM_WPT];
#pragma unroll
    for (int wi = 0; wi < GEMM_WPT; wi++)
#pragma unroll
        for (int wj = 0; wj < GEMM_WPT; wj++) acc[wi][wj] = 0;

    for (int p0 = 0; p0 < K; p0 += GEMM_TK) {
#pragma unroll
        for (int r = 0; r < GEMM_LOADS; r++) {
            const int e = tid + r * GEMM_THREADS;
            /* A stored [M,K] (consecutive k adjacent) or, transposed, [K,M] (consecutive rows adjacent) */
            const int ai = transA ? e % GEMM_TS : e / GEMM_TK;
            const int ap = transA ? e / GEMM_TS : e % GEMM_TK;
            const int gi = row0 + ai, gp = p0 + ap;
            real av = 0;
            if (gi < M && gp < K) av = load_quant(A, A_off + aBase + (transA ? (long) gp * M + gi : (long) gi * K + gp), GEMM_A_DT, A_sc);
            As[ap][ai] = av;
            /* B stored [K,N] (consecutive columns adjacent) or, transposed, [N,K] (consecutive k adjacent) */
            const int bj = transB ? e / GEMM_TK : e % GEMM_TS;
            const int bp = transB ? e % GEMM_TK : e / GEMM_TS;
            const int gj = col0 + bj, gq = p0 + bp;
            real bv = 0;
            if (gj < N && gq < K) bv = load_quant(B, B_off + bBase + (transB ? (long) gj * K + gq : (long) gq * N + gj), GEMM_B_DT, B_sc);
            Bs[bp][bj] = bv;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll
        for (int p = 0; p < GEMM_TK; p++) {
            real a[GEMM_WPT], b[GEMM_WPT];
#pragma unroll
            for (int w = 0; w < GEMM_WPT; w++) {
                a[w] = As[p][ty + w * GEMM_RTS];
                b[w] = Bs[p][tx + w * GEMM_RTS];
            }
#pragma unroll
            for (int wi = 0; wi < GEMM_WPT; wi++)
#pragma unroll
                for (int wj = 0; wj < GEMM_WPT; wj++) acc[wi][wj] = MULADD(a[wi], b[wj], acc[wi][wj]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

#pragma unroll
    for (int wi = 0; wi < GEMM_WPT; wi++) {
        const int row = row0 + ty + wi * GEMM_RTS;
        if (row >= M) continue;
#pragma unroll
        for (int wj = 0; wj < GEMM_WPT; wj++) {
            const int col = col0 + tx + wj * GEMM_RTS;
            if (col >= N) continue;
            const long idx = C_off + cBase + (long) row * N + col;
            real v = alpha * acc[wi][wj];
            if (beta != 0) v += beta * load_elem(C, idx, GEMM_C_DT);
            store_elem(C, idx, GEMM_C_DT, v);
        }
    }
}
