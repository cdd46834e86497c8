/*
 * C = alpha * op(A) op(B) + beta * C for BF16 A and B on Hopper (compute capability 9.0) with warpgroup MMA: the same
 * contract (low-rank pair included), tile of C (128 x 128), K pipeline (MMA_STAGES buffers of 32 columns filled by cp.async), split-K and
 * epilogue as gemm_mma in gemm_mma.cl, but each of the work-group's two warpgroups (128 work-items) multiplies its
 * 64 x 128 half of the tile with wgmma.mma_async m64n128k16: the tensor cores read both operands straight from local
 * memory through matrix descriptors (no ldmatrix, no operand registers), the accumulators stay in the mma layout.
 *
 * NVIDIA's OpenCL compiler emits PTX for sm_90, where ptxas rejects wgmma (it needs sm_90a). So the instructions are
 * written as PTX comments behind SM90A() (the operands substituted all the same), and KernelLibrary rebuilds the
 * program from its own PTX with the comment markers removed and the target set to sm_90a (tools/gpu/opencl-ptx-probe
 * WgmmaProbe: exact on an H200). Unpatched (any other build), the kernel is never launched.
 *
 * Operand tiles (gemm_mma.cl's wg_at_row_contiguous, mma_at_k_contiguous): a k-contiguous operand (A, or a transposed
 * B) as [128 rows][32 k] with the 64-byte swizzle, read K-major; a row-contiguous one (a transposed A, or B) as two
 * panels [32 k][64 rows] with the 128-byte swizzle, read MN-major (transposed). Each stage's tiles start on a 1024-byte
 * boundary (the swizzle patterns repeat every 512 or 1024 bytes of the address).
 */
#define SM90A(s) "//JSLOTH90A " s
#define WG_THREADS 256
#ifndef WG_OVERLAP
#define WG_OVERLAP 0 /* 1: keep one slice's wgmma in flight (two barriers per slice); 0: wait for each slice's (one) */
#endif

/* The matrix descriptor of a tile at a local address: stride-dimension offset sbo (bytes between 8-row groups),
 * leading-dimension offset lbo (bytes between 64-row panels of an MN-major operand; unused K-major), swizzle mode
 * 1 (128 bytes) or 2 (64 bytes). */
inline ulong wg_desc(uint address, uint lbo, uint sbo, ulong swizzle) {
    return (ulong) ((address & 0x3FFFF) >> 4) | ((ulong) (lbo >> 4) << 16) | ((ulong) (sbo >> 4) << 32) | (swizzle << 62);
}

/* The descriptor of a 64-row (A) or 128-row (B) operand at rows `row` of a stage tile at `tile`, reduction columns
 * kk .. kk + 15. kContig: the tile is k-contiguous (K-major, 64-byte swizzle); else row-contiguous (MN-major, two
 * 128-byte-swizzled panels of 4 KB). */
inline ulong wg_operand(uint tile, int kContig, int row, int kk) {
    if (kContig) return wg_desc(tile + 2u * (row * MMA_BK + kk), 16, 8 * MMA_BK * 2, 2);
    return wg_desc(tile + 2u * ((row >> 6) * (MMA_BK * 64) + kk * 64), MMA_BK * 64 * 2, 1024, 1);
}

/* acc[64 x 128] += A (descriptor a) B (descriptor b), 16 reduction columns; tA, tB: the operand is MN-major. */
#define WG_MMA_M64N128(acc, a, b, tA, tB)                                                                                  \
    asm volatile(SM90A("{ .reg .pred p; setp.ne.b32 p, %66, 0; wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " \
                       "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,"  \
                       "%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49," \
                       "%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, %64, %65, p, 1, 1, " #tA ", " #tB "; }") \
                 : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3]), "+f"(acc[4]), "+f"(acc[5]), "+f"(acc[6]),   \
                   "+f"(acc[7]), "+f"(acc[8]), "+f"(acc[9]), "+f"(acc[10]), "+f"(acc[11]), "+f"(acc[12]), "+f"(acc[13]),  \
                   "+f"(acc[14]), "+f"(acc[15]), "+f"(acc[16]), "+f"(acc[17]), "+f"(acc[18]), "+f"(acc[19]),            \
                   "+f"(acc[20]), "+f"(acc[21]), "+f"(acc[22]), "+f"(acc[23]), "+f"(acc[24]), "+f"(acc[25]),            \
                   "+f"(acc[26]), "+f"(acc[27]), "+f"(acc[28]), "+f"(acc[29]), "+f"(acc[30]), "+f"(acc[31]),            \
                   "+f"(acc[32]), "+f"(acc[33]), "+f"(acc[34]), "+f"(acc[35]), "+f"(acc[36]), "+f"(acc[37]),            \
                   "+f"(acc[38]), "+f"(acc[39]), "+f"(acc[40]), "+f"(acc[41]), "+f"(acc[42]), "+f"(acc[43]),            \
                   "+f"(acc[44]), "+f"(acc[45]), "+f"(acc[46]), "+f"(acc[47]), "+f"(acc[48]), "+f"(acc[49]),            \
                   "+f"(acc[50]), "+f"(acc[51]), "+f"(acc[52]), "+f"(acc[53]), "+f"(acc[54]), "+f"(acc[55]),            \
                   "+f"(acc[56]), "+f"(acc[57]), "+f"(acc[58]), "+f"(acc[59]), "+f"(acc[60]), "+f"(acc[61]),            \
                   "+f"(acc[62]), "+f"(acc[63])                                                                          \
                 : "l"(a), "l"(b), "r"(1)                                                                               \
                 : "memory")
/* the transpose flags of the build's storage orders: A MN-major unless k-contiguous, B likewise */
#if MMA_A_K && MMA_B_K
#define WG_MMA(acc, a, b) WG_MMA_M64N128(acc, a, b, 0, 0)
#elif MMA_A_K
#define WG_MMA(acc, a, b) WG_MMA_M64N128(acc, a, b, 0, 1)
#elif MMA_B_K
#define WG_MMA(acc, a, b) WG_MMA_M64N128(acc, a, b, 1, 0)
#else
#define WG_MMA(acc, a, b) WG_MMA_M64N128(acc, a, b, 1, 1)
#endif

__attribute__((reqd_work_group_size(WG_THREADS, 1, 1)))
kernel void gemm_wgmma(int M, int N, int K, int transA, int transB, real alpha, real beta,
                       QTENSOR(A), long strideA, QTENSOR(B), long strideB, TENSOR(C), long strideC, int kSplit, int splits,
                       TENSOR(L), TENSOR(R), int lowK, real lowFactor) {
    local ushort tiles[2 * MMA_STAGES * MMA_TILE] __attribute__((aligned(1024)));
    local ushort *As = tiles, *Bs = tiles + MMA_STAGES * MMA_TILE;
    const int tid = get_local_id(0), warp = tid >> 5, wg = tid >> 7;
    const int col0 = get_group_id(0) * MMA_BN, row0 = get_group_id(1) * MMA_BM;
    const long z = get_global_id(2), batch = z / splits; /* C tile z: batch, and the K range z % splits */
    const int kBegin = (int) (z - batch * splits) * kSplit, kEnd = min(K, kBegin + kSplit);
    global const ushort *a = (global const ushort *) A + A_off + batch * strideA;
    global const ushort *b = (global const ushort *) B + B_off + batch * strideB;
    const int aK = MMA_A_K, bK = MMA_B_K;
    const long lda = transA ? M : K, ldb = transB ? K : N;
    const uint aBase = (uint) (size_t) As, bBase = (uint) (size_t) Bs;
    global const ushort *l = (global const ushort *) L + L_off, *r = (global const ushort *) R + R_off;
    const long ldl = transA ? M : lowK, ldr = transB ? lowK : N;
    const int lowSlices = kBegin == 0 ? (lowK + MMA_BK - 1) / MMA_BK : 0; /* the low-rank pair first, as gemm_mma */
    const int slices = lowSlices + (kEnd - kBegin + MMA_BK - 1) / MMA_BK;

    float acc[64]; /* rows 64 wg + 16 (warp % 4) + ..: mma_store_tile's layout with I = 1, J = 16 */
#pragma unroll
    for (int i = 0; i < 64; i++) acc[i] = 0.f;

#pragma unroll
    for (int s = 0; s < MMA_STAGES - 1; s++) {
        if (s < slices)
            mma_fetch_first(s, lowSlices, a, lda, b, ldb, l, ldl, r, ldr, lowK, kBegin, kEnd, aK, bK, row0, M, col0, N, tid,
                            aBase + 2u * s * MMA_TILE, As + s * MMA_TILE, bBase + 2u * s * MMA_TILE, Bs + s * MMA_TILE, WG_THREADS, 1);
        asm volatile("cp.async.commit_group;" ::: "memory");
    }
    for (int s = 0; s < slices; s++) {
        asm volatile("cp.async.wait_group 1;" ::: "memory"); /* MMA_STAGES - 2: all but the newest group done */
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); /* this work-item's writes, visible to wgmma */
        barrier(CLK_LOCAL_MEM_FENCE); /* slice s has arrived for everyone */
        const int buf = s % MMA_STAGES, next = s + MMA_STAGES - 1, nextBuf = next % MMA_STAGES;
        const uint at = aBase + 2u * buf * MMA_TILE, bt = bBase + 2u * buf * MMA_TILE;
#if !WG_OVERLAP
        /* every wgmma of slice s - 1 completed before the barrier: queue slice s + STAGES - 1 into its buffer */
        if (next < slices)
            mma_fetch_pair(a, lda, b, ldb, aK, bK, row0, M, col0, N, kBegin + (next - lowSlices) * MMA_BK, kEnd, tid,
                           aBase + 2u * nextBuf * MMA_TILE, As + nextBuf * MMA_TILE, bBase + 2u * nextBuf * MMA_TILE,
                           Bs + nextBuf * MMA_TILE, WG_THREADS, 1);
        asm volatile("cp.async.commit_group;" ::: "memory");
#endif
        asm volatile(SM90A("wgmma.fence.sync.aligned;") ::: "memory");
#pragma unroll
        for (int kk = 0; kk < MMA_BK; kk += 16) WG_MMA(acc, wg_operand(at, aK, wg * 64, kk), wg_operand(bt, bK, 0, kk));
        asm volatile(SM90A("wgmma.commit_group.sync.aligned;") ::: "memory");
#if WG_OVERLAP
        /* slice s's products stay in flight while slice s - 1's complete; once every warpgroup's have (the second
         * barrier), slice s + STAGES - 1 goes into the buffer slice s - 1 used */
        if (s == lowSlices - 1) {
            asm volatile(SM90A("wgmma.wait_group.sync.aligned 0;") ::: "memory");
            mma_low_rank_done(acc, 64, lowFactor);
        } else {
            asm volatile(SM90A("wgmma.wait_group.sync.aligned 1;") ::: "memory");
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (next < slices)
            mma_fetch_pair(a, lda, b, ldb, aK, bK, row0, M, col0, N, kBegin + (next - lowSlices) * MMA_BK, kEnd, tid,
                           aBase + 2u * nextBuf * MMA_TILE, As + nextBuf * MMA_TILE, bBase + 2u * nextBuf * MMA_TILE,
                           Bs + nextBuf * MMA_TILE, WG_THREADS, 1);
        asm volatile("cp.async.commit_group;" ::: "memory");
#else
        asm volatile(SM90A("wgmma.wait_group.sync.aligned 0;") ::: "memory");
        if (s == lowSlices - 1) mma_low_rank_done(acc, 64, lowFactor);
#endif
    }
    asm volatile(SM90A("wgmma.wait_group.sync.aligned 0;") ::: "memory");
    mma_store_tile(acc, 1, 16, wg * 64 + (warp & 3) * 16, 0, C, C_off + z * strideC, M, N, row0, col0, alpha, beta, tid,
                   WG_THREADS, tiles);
}
