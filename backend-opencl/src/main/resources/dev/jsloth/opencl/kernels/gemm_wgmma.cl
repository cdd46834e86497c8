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
 * WgmmaProbe: exact on an H200). Every sm_90 instruction (the proxy fence too) stays behind SM90A(), so the program
 * (gemm_mma's too) still assembles for compute capability 8.x, where these kernels are never launched.
 *
 * Operand tiles (gemm_mma.cl's wg_at_row_contiguous, mma_at_k_contiguous): a k-contiguous operand (A, or a transposed
 * B) as [128 rows][32 k] with the 64-byte swizzle, read K-major; a row-contiguous one (a transposed A, or B) as two
 * panels [32 k][64 rows] with the 128-byte swizzle, read MN-major (transposed). Each stage's tiles start on a 1024-byte
 * boundary (the swizzle patterns repeat every 512 or 1024 bytes of the address).
 */
#define SM90A(s) "//JSLOTH90A " s
#define WG_THREADS 256
#if MMA_STAGES != 3
#error "the K loops' cp.async.wait_group counts (MMA_STAGES - 2 = 1) assume 3 stages"
#endif
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

/* Issues a stage's products for this warpgroup (64 rows from `wg * 64`, all 128 columns, 32 reduction columns) and
 * commits them as one group; the caller waits. (A macro: the accumulators must stay registers of the kernel.) */
#define WG_SLICE_PRODUCTS(acc, at, bt, aK, bK, wg)                                                                     \
    do {                                                                                                               \
        asm volatile(SM90A("wgmma.fence.sync.aligned;") ::: "memory");                                               \
        _Pragma("unroll") for (int kk = 0; kk < MMA_BK; kk += 16)                                                      \
            WG_MMA(acc, wg_operand(at, aK, (wg) * 64, kk), wg_operand(bt, bK, 0, kk));                               \
        asm volatile(SM90A("wgmma.commit_group.sync.aligned;") ::: "memory");                                        \
    } while (0)

__attribute__((reqd_work_group_size(WG_THREADS, 1, 1)))
kernel void gemm_wgmma(MMA_GEMM_ARGS) {
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
        asm volatile(SM90A("fence.proxy.async.shared::cta;") ::: "memory"); /* this work-item's writes, visible to wgmma */
        barrier(CLK_LOCAL_MEM_FENCE); /* slice s has arrived for everyone */
        const int buf = s % MMA_STAGES, next = s + MMA_STAGES - 1, nextBuf = next % MMA_STAGES;
        const uint at = aBase + 2u * buf * MMA_TILE, bt = bBase + 2u * buf * MMA_TILE;
#if WG_OVERLAP
        /* slice s's products stay in flight while slice s - 1's complete; once every warpgroup's have (the second
         * barrier), slice s + STAGES - 1 goes into the buffer slice s - 1 used */
        WG_SLICE_PRODUCTS(acc, at, bt, aK, bK, wg);
        if (s == lowSlices - 1) {
            asm volatile(SM90A("wgmma.wait_group.sync.aligned 0;") ::: "memory");
            mma_low_rank_done(acc, 64, lowFactor, lowRound);
        } else {
            asm volatile(SM90A("wgmma.wait_group.sync.aligned 1;") ::: "memory");
        }
        barrier(CLK_LOCAL_MEM_FENCE);
#endif
        /* (serial: every wgmma of slice s - 1 completed before the barrier above) */
        if (next < slices)
            mma_fetch_pair(a, lda, b, ldb, aK, bK, row0, M, col0, N, kBegin + (next - lowSlices) * MMA_BK, kEnd, tid,
                           aBase + 2u * nextBuf * MMA_TILE, As + nextBuf * MMA_TILE, bBase + 2u * nextBuf * MMA_TILE,
                           Bs + nextBuf * MMA_TILE, WG_THREADS, 1);
        asm volatile("cp.async.commit_group;" ::: "memory");
#if !WG_OVERLAP
        WG_SLICE_PRODUCTS(acc, at, bt, aK, bK, wg);
        asm volatile(SM90A("wgmma.wait_group.sync.aligned 0;") ::: "memory");
        if (s == lowSlices - 1) mma_low_rank_done(acc, 64, lowFactor, lowRound);
#endif
    }
    asm volatile(SM90A("wgmma.wait_group.sync.aligned 0;") ::: "memory");
    mma_store_tile(acc, 1, 16, wg * 64 + (warp & 3) * 16, 0, C, C_off + z * strideC, M, N, row0, col0, alpha, beta, tid,
                   WG_THREADS, tiles);
}

/*
 * Narrow products on Hopper: C (M x N, N <= 16) = alpha op(A) op(B) + beta C, one
 * warpgroup per 64 rows of C with wgmma m64n16k16, NW_STAGES slices of 32 columns in flight (6 x 5 KB of local memory:
 * several work-groups per SM). These are LoRA's rank-16 products, which are memory-bound: X A^T and dY B stream X or dY
 * once, and the gradients dB = dY^T (XA), dA^T = X^T (dY B) stream them along K (A transposed, MN-major tiles). On the
 * 128 x 128 tiles of gemm_wgmma, N = 16 would pad the products 8x. B's tile is K-major whichever way B is stored
 * (narrow_fetch_b); for a product with M <= 16 < N the host computes C^T = op(B)^T op(A)^T instead, storing it
 * transposed (transC). Split K as
 * gemm_wgmma: the second grid dimension is the K range, partials at z * strideC.
 */
#define NW_STAGES 6 /* cp.async.wait_group 4 below is NW_STAGES - 2 */
#define NW_BM 64
#define NW_BN 16
#define NW_A_TILE (NW_BM * MMA_BK)
#define NW_B_TILE (NW_BN * MMA_BK)

/* acc[64 x 16] += A (descriptor a) B (descriptor b, K-major), 16 reduction columns; tA: A is MN-major. */
#define WG_MMA_M64N16(acc, a, b, tA)                                                                                    \
    asm volatile(SM90A("{ .reg .pred p; setp.ne.b32 p, %10, 0; wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 " \
                       "{%0,%1,%2,%3,%4,%5,%6,%7}, %8, %9, p, 1, 1, " #tA ", 0; }")                                     \
                 : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3]), "+f"(acc[4]), "+f"(acc[5]), "+f"(acc[6]),  \
                   "+f"(acc[7])                                                                                          \
                 : "l"(a), "l"(b), "r"(1)                                                                               \
                 : "memory")
#if MMA_A_K
#define WG_MMA_NARROW(acc, a, b) WG_MMA_M64N16(acc, a, b, 0)
#else
#define WG_MMA_NARROW(acc, a, b) WG_MMA_M64N16(acc, a, b, 1)
#endif

/*
 * Queues a narrow product's 16 x 32 slice of B into its K-major tile: stored [N][K] (MMA_B_K) by mma_fetch; stored
 * [K][N] (N values per k-row: dY B's factor, the gradients' XA and dY B) value by value, one 8-value chunk of a row of
 * the tile per work-item of the first 64 (the tile is 1 KB; B stays in the caches).
 */
inline void narrow_fetch_b(global const ushort *b, int N, int K, int k0, int kEnd, int tid, uint tile, local ushort *tileP) {
#if MMA_B_K
    mma_fetch(b, K, 1, 0, N, k0, kEnd, tid, tile, tileP, 128, 1, NW_BN);
#else
    if (tid < NW_BN * (MMA_BK / 8)) {
        const int n = tid >> 2, k = (tid & 3) * 8;
        ushort e[8];
#pragma unroll
        for (int j = 0; j < 8; j++) e[j] = (n < N && k0 + k + j < kEnd) ? b[(long) (k0 + k + j) * N + n] : (ushort) 0;
        *(local uint4 *) (tileP + mma_at_k_contiguous(n, k)) = as_uint4((ushort8) (e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]));
    }
#endif
}

__attribute__((reqd_work_group_size(128, 1, 1)))
kernel void gemm_wgmma_narrow(int M, int N, int K, int transA, real alpha, real beta, QTENSOR(A), TENSOR(B), TENSOR(C),
                              long strideC, int transC, int kSplit) {
    /* A tiles first (4 KB each), then B tiles (1 KB each): every tile on a 1024-byte boundary */
    local ushort tiles[NW_STAGES * (NW_A_TILE + NW_B_TILE)] __attribute__((aligned(1024)));
    local ushort *As = tiles, *Bs = tiles + NW_STAGES * NW_A_TILE;
    const int tid = get_local_id(0), warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int row0 = get_group_id(0) * NW_BM;
    const long z = get_group_id(1); /* the K range */
    const int kBegin = (int) z * kSplit, kEnd = min(K, kBegin + kSplit);
    global const ushort *a = (global const ushort *) A + A_off, *b = (global const ushort *) B + B_off;
    const int aK = MMA_A_K;
    const long lda = transA ? M : K;
    const uint aBase = (uint) (size_t) As, bBase = (uint) (size_t) Bs;
    const int slices = (kEnd - kBegin + MMA_BK - 1) / MMA_BK;
    float acc[8];
#pragma unroll
    for (int i = 0; i < 8; i++) acc[i] = 0.f;

#pragma unroll
    for (int s = 0; s < NW_STAGES - 1; s++) {
        if (s < slices) {
            mma_fetch(a, lda, aK, row0, M, kBegin + s * MMA_BK, kEnd, tid, aBase + 2u * s * NW_A_TILE, As + s * NW_A_TILE, 128, 1, NW_BM);
            narrow_fetch_b(b, N, K, kBegin + s * MMA_BK, kEnd, tid, bBase + 2u * s * NW_B_TILE, Bs + s * NW_B_TILE);
        }
        asm volatile("cp.async.commit_group;" ::: "memory");
    }
    for (int s = 0; s < slices; s++) {
        asm volatile("cp.async.wait_group 4;" ::: "memory"); /* NW_STAGES - 2: all but the newest group done */
        asm volatile(SM90A("fence.proxy.async.shared::cta;") ::: "memory");
        barrier(CLK_LOCAL_MEM_FENCE); /* slice s has arrived for everyone; slice s - 1's products have completed */
        const int next = s + NW_STAGES - 1, nb = next % NW_STAGES, buf = s % NW_STAGES;
        if (next < slices) {
            mma_fetch(a, lda, aK, row0, M, kBegin + next * MMA_BK, kEnd, tid, aBase + 2u * nb * NW_A_TILE, As + nb * NW_A_TILE, 128, 1, NW_BM);
            narrow_fetch_b(b, N, K, kBegin + next * MMA_BK, kEnd, tid, bBase + 2u * nb * NW_B_TILE, Bs + nb * NW_B_TILE);
        }
        asm volatile("cp.async.commit_group;" ::: "memory");
        const uint at = aBase + 2u * buf * NW_A_TILE, bt = bBase + 2u * buf * NW_B_TILE;
        asm volatile(SM90A("wgmma.fence.sync.aligned;") ::: "memory");
#pragma unroll
        for (int kk = 0; kk < MMA_BK; kk += 16) WG_MMA_NARROW(acc, wg_operand(at, aK, 0, kk), wg_operand(bt, 1, 0, kk));
        asm volatile(SM90A("wgmma.commit_group.sync.aligned;") ::: "memory");
        asm volatile(SM90A("wgmma.wait_group.sync.aligned 0;") ::: "memory");
    }
    const long cBase = C_off + z * strideC;
#pragma unroll
    for (int j = 0; j < 2; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int r = row0 + warp * 16 + g + 8 * (e >> 1), c = j * 8 + 2 * t + (e & 1);
            if (r >= M || c >= N) continue;
            const long idx = cBase + (transC ? (long) c * M + r : (long) r * N + c);
            real v = alpha * (real) acc[4 * j + e];
            if (beta != 0) v += beta * load_elem(C, idx, GEMM_C_DT);
            store_elem(C, idx, GEMM_C_DT, v);
        }
}
