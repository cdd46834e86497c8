/*
 * C = alpha * op(A) op(B) + beta * C for BF16 A and B on NVIDIA GPUs of compute capability 8.0 or newer, on the
 * tensor cores, batched over the third grid dimension like gemm.cl. NVIDIA's OpenCL compiler takes inline PTX
 * (tools/gpu/opencl-ptx-probe): the products are mma.sync.m16n8k16 with bf16 operands and fp32 accumulation, their
 * operand fragments read by ldmatrix from local tiles that cp.async fills straight from global memory.
 *
 * A work-group computes a 128 x 128 tile of C with 8 warps (2 x 4) of 64 x 32 (4 x 4 mma tiles, 64 accumulators per
 * work-item: ~124 registers, so two work-groups share an SM), or with MMA_WN = 64 4 warps (2 x 2) of 64 x 64. K is
 * walked 32 at a time through MMA_STAGES local buffers: while one slice is multiplied, the copies of the next
 * MMA_STAGES - 1 are in flight (one barrier per slice). Each operand's tile keeps its storage order: a source contiguous along k (A, or a transposed B) as [row][32 k] (64-byte rows), one contiguous
 * along m or n (a transposed A, or B) as [32 k][128 rows] (256-byte rows) read by the transposing ldmatrix; 16-byte
 * chunks are placed XOR-swizzled so that the 8 row addresses of every ldmatrix fall in distinct banks. A chunk that is
 * whole and 16-byte aligned in global memory goes by cp.async; one at an edge or misaligned (a leading dimension not a
 * multiple of 8) is read value by value and stored, zero-filled, so any M, N, K work. Built per C type and transpose
 * pair (MMA_A_K = !transA, MMA_B_K = transB: the storage orders are compile-time). Only NVIDIA devices build this.
 *
 * Low rank: C = alpha (op(A) op(B) + lowFactor op(L) op(R)) + beta C in one pass, L and R stored as A and B are
 * (LoRA: Y = X W^T + s (XA) B^T, dX = dY W + s (dY B) A; the host passes lowFactor = s / alpha). The K walk starts
 * with the pair's ceil(lowK / 32) slices (at most MMA_STAGES - 1: they are all queued in the pipeline's prologue),
 * scales the accumulators by lowFactor (and with lowRound rounds them to bf16, for a BF16 C, as the two-product default
 * stores the pair's product), then adds the main product: C is written once. lowK = 0 is a plain product.
 *
 * Split K: a product with few C tiles and a long K (LoRA's rank-16 gradients, K = the tokens of a batch) would leave
 * most of the GPU idle, so the host may cut K into `splits` ranges of kSplit: the third grid dimension then runs over
 * batch x splits, each work-group writes its partial tile (alpha 1, beta 0) to an F32 scratch [batch x splits][M][N],
 * and gemm_splitk_sum adds the partials in order and applies alpha and beta (deterministic).
 */
#if !defined(GEMM_C_DT)
#error "GEMM_C_DT (storage type code of C) must be defined"
#endif
#define MMA_STAGES 3 /* local buffers of the K pipeline: 3 x 16 KB, the 48 KB LaunchConfig.tensorCores() requires */
#if !defined(MMA_A_K) || !defined(MMA_B_K)
#error "MMA_A_K (A stored [M][K]) and MMA_B_K (B stored [N][K]) must be defined (0 or 1)"
#endif

#ifndef MMA_WN
#define MMA_WN 32 /* each warp's columns: 32 (8 warps of 64 x 32) or 64 (4 warps of 64 x 64) */
#endif
#define MMA_THREADS (128 * 64 / MMA_WN)
#define MMA_BM 128
#define MMA_BN 128
#define MMA_BK 32
#define MMA_TILE (MMA_BM * MMA_BK) /* 16-bit values per operand tile per stage */
#if 2 * MMA_STAGES * MMA_TILE < MMA_BM * MMA_BN
#error "the operand buffers must hold a 128 x 128 tile of C (mma_store_tile)"
#endif

/* c[0..3] += A (a[0..3]) * B (b0, b1), the m16n8k16 fragment layouts. */
inline void mma_bf16(float *c, const uint *a, uint b0, uint b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Element offset of the 16-byte chunk holding (row, k) in a k-contiguous tile [128][32] or in a row-contiguous tile
 * [32][128], chunks XOR-swizzled (the bank-conflict-free placement described above). */
inline int mma_at_k_contiguous(int row, int k) {
    return row * MMA_BK + (((k >> 3) ^ ((row >> 1) & 3)) << 3);
}

inline int mma_at_row_contiguous(int row, int k) {
    return k * MMA_BM + (((row >> 3) ^ (k & 7)) << 3);
}

/* The wgmma layouts of gemm_wgmma.cl (Hopper's tensor cores read them from local memory themselves, so the chunks sit
 * where the descriptors' swizzle modes put them): a k-contiguous tile [128][32] has 64-byte rows, 16-byte chunk j of
 * row r at j ^ ((r >> 1) & 3) (the 64-byte swizzle, the same placement as mma_at_k_contiguous); a row-contiguous tile
 * [32][128] is two panels [32][64] of 128-byte rows (4 KB each), chunk c of k-row k at c ^ (k & 7) (the 128-byte
 * swizzle). Tiles start on 1024-byte boundaries. */
inline int wg_at_row_contiguous(int row, int k) {
    return (row >> 6) * (MMA_BK * 64) + k * 64 + ((((row >> 3) & 7) ^ (k & 7)) << 3);
}

/* Element offset of the chunk holding (row, k): layout 0 is gemm_mma.cl's, 1 gemm_wgmma.cl's (compile-time constant). */
inline int mma_tile_offset(int layout, int kContig, int row, int k) {
    if (kContig) return mma_at_k_contiguous(row, k);
    return layout ? wg_at_row_contiguous(row, k) : mma_at_row_contiguous(row, k);
}

/*
 * Queues the copies of a tileRows x 32 slice of op(X) (rows r0.., columns k0..; `rows` rows and K columns in op form,
 * ld in storage) into the local tile at `tile` (its 32-bit local address) / `tileP` (the same as a pointer, for chunks
 * stored value by value), in layout `layout` (mma_tile_offset). kContig: X is stored [rows][K]; else [K][rows].
 * tileRows * 4 chunks of 8 values over `threads` work-items (all constants at compile time).
 */
inline void mma_fetch(global const ushort *x, long ld, int kContig, int r0, int rows, int k0, int K, int tid,
                      uint tile, local ushort *tileP, const int threads, const int layout, const int tileRows) {
    const int chunks = tileRows * (MMA_BK / 8), perRow = tileRows / 8;
#pragma unroll
    for (int i = 0; i < (chunks + threads - 1) / threads; i++) {
        const int ch = tid + i * threads;
        if (chunks % threads != 0 && ch >= chunks) break;
        int r, k; /* the chunk's first element: row r, column k of the slice; 8 values along k (kContig) or along r */
        if (kContig) {
            r = ch >> 2;
            k = (ch & 3) * 8;
        } else { /* unsigned: perRow is a power of two, so these are a shift and a mask */
            k = (int) ((uint) ch / (uint) perRow);
            r = (int) ((uint) ch % (uint) perRow) * 8;
        }
        const int gr = r0 + r, gk = k0 + k;
        const int at = mma_tile_offset(layout, kContig, r, k);
        global const ushort *src = x + (kContig ? (long) gr * ld + gk : (long) gk * ld + gr);
        if ((kContig ? (gr < rows && gk + 8 <= K) : (gk < K && gr + 8 <= rows)) && ((size_t) src & 15) == 0) {
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(tile + 2u * at), "l"(src) : "memory");
        } else {
            ushort e[8];
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const int rr = kContig ? gr : gr + j, kk = kContig ? gk + j : gk;
                e[j] = (rr < rows && kk < K) ? x[kContig ? (long) rr * ld + kk : (long) kk * ld + rr] : (ushort) 0;
            }
            *(local uint4 *) (tileP + at) = as_uint4((ushort8) (e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]));
        }
    }
}

/* The end of the low-rank pair's slices: acc[0..n) *= f, rounded to bf16 where `round` (C is BF16: with alpha 1 and
 * beta 0, the value the two-product default would have stored before adding the main product; also in the F32
 * partials of a split product into a BF16 C). */
inline void mma_low_rank_done(float *acc, const int n, real f, int round) {
#pragma unroll
    for (int i = 0; i < n; i++) {
        const float v = (float) (f * (real) acc[i]);
        acc[i] = round ? bf16_to_float(float_to_bf16(v)) : v;
    }
}

/* Queues the 32-column slice at k0 of both operands (A and B, or the low-rank L and R) into a stage's tiles. */
inline void mma_fetch_pair(global const ushort *a, long lda, global const ushort *b, long ldb, int aK, int bK, int row0,
                           int M, int col0, int N, int k0, int kEnd, int tid, uint aTile, local ushort *aP, uint bTile,
                           local ushort *bP, const int threads, const int layout) {
    mma_fetch(a, lda, aK, row0, M, k0, kEnd, tid, aTile, aP, threads, layout, MMA_BM);
    mma_fetch(b, ldb, bK, col0, N, k0, kEnd, tid, bTile, bP, threads, layout, MMA_BN);
}

/*
 * Queues slice s < MMA_STAGES - 1 of a work-group's K walk (the pipeline's prologue): slices [0, lowSlices) are the
 * low-rank pair's (L, R: op(L) M x lowK, op(R) lowK x N, stored in the orders of A and B), the rest the main pair's
 * from kBegin. The host keeps lowK <= (MMA_STAGES - 1) * 32, so the main loop only ever fetches the main pair.
 */
inline void mma_fetch_first(int s, int lowSlices, global const ushort *a, long lda, global const ushort *b, long ldb,
                            global const ushort *l, long ldl, global const ushort *r, long ldr, int lowK, int kBegin,
                            int kEnd, int aK, int bK, int row0, int M, int col0, int N, int tid, uint aTile,
                            local ushort *aP, uint bTile, local ushort *bP, const int threads, const int layout) {
    if (s < lowSlices)
        mma_fetch_pair(l, ldl, r, ldr, aK, bK, row0, M, col0, N, s * MMA_BK, lowK, tid, aTile, aP, bTile, bP, threads, layout);
    else
        mma_fetch_pair(a, lda, b, ldb, aK, bK, row0, M, col0, N, kBegin + (s - lowSlices) * MMA_BK, kEnd, tid, aTile, aP,
                       bTile, bP, threads, layout);
}

/*
 * Stores a work-group's 128 x 128 tile of C (rows row0.., columns col0..) from each work-item's accumulators in the
 * mma accumulator layout: acc[(i * J + j) * 4 + e] holds C(wm + 16 i + g + 8 (e >> 1), wn + 8 j + 2 t + (e & 1)),
 * i < I, j < J. C = alpha acc + beta C, at C's type. `tiles` (at least 32 KB of local memory, the operand buffers) is
 * reused for a BF16 tile written with beta = 0; the caller's barrier-synchronised work-items are `threads`.
 */
inline void mma_store_tile(const float *acc, const int I, const int J, int wm, int wn, global uchar *C, long cBase,
                           int M, int N, int row0, int col0, real alpha, real beta, int tid, const int threads,
                           local ushort *tiles) {
    const int lane = tid & 31, g = lane >> 2, t = lane & 3;
#if GEMM_C_DT == DT_BF16
    /* beta = 0 into a whole BF16 tile with 16-byte aligned rows (a write only, e.g. LoRA's forward Y): the tile goes
     * through local memory, rounded once, and out as 16-byte row chunks */
    if (beta == 0 && row0 + MMA_BM <= M && col0 + MMA_BN <= N && (N & 7) == 0 && (cBase & 7) == 0) {
        barrier(CLK_LOCAL_MEM_FENCE); /* every warp is done with the operand tiles: reuse them for C (32 KB) */
        local ushort *Cs = tiles; /* [128][128 + 8] would not fit: rows of 128, 16-byte chunks XOR-swizzled by row */
#pragma unroll
        for (int i = 0; i < I; i++)
#pragma unroll
            for (int j = 0; j < J; j++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const int r = wm + i * 16 + g + h * 8, c = wn + j * 8 + 2 * t;
                    const uint pair = (uint) float_to_bf16((float) (alpha * (real) acc[(i * J + j) * 4 + 2 * h]))
                            | ((uint) float_to_bf16((float) (alpha * (real) acc[(i * J + j) * 4 + 2 * h + 1])) << 16);
                    *(local uint *) (Cs + r * MMA_BN + ((((c >> 3) ^ (r & 15)) << 3) | (c & 7))) = pair;
                }
        barrier(CLK_LOCAL_MEM_FENCE);
        global ushort *cp = (global ushort *) C + cBase;
#pragma unroll
        for (int e = 0; e < MMA_BM * MMA_BN / 8 / threads; e++) {
            const int ch = tid + e * threads, r = ch >> 4, c = (ch & 15) << 3;
            *(global uint4 *) (cp + (long) (row0 + r) * N + col0 + c) = *(local uint4 *) (Cs + r * MMA_BN + (((c >> 3) ^ (r & 15)) << 3));
        }
        return;
    }
#endif
    /* otherwise element pairs: one 8-byte (F32) or 4-byte (BF16) store where the pair is whole and aligned */
#pragma unroll
    for (int i = 0; i < I; i++)
#pragma unroll
        for (int j = 0; j < J; j++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int r = row0 + wm + i * 16 + g + h * 8, c = col0 + wn + j * 8 + 2 * t;
                if (r >= M || c >= N) continue;
                const long idx = cBase + (long) r * N + c;
                real v0 = alpha * (real) acc[(i * J + j) * 4 + 2 * h], v1 = alpha * (real) acc[(i * J + j) * 4 + 2 * h + 1];
                const int pair = c + 1 < N && (idx & 1) == 0;
                if (beta != 0) {
                    v0 += beta * load_elem(C, idx, GEMM_C_DT);
                    if (c + 1 < N) v1 += beta * load_elem(C, idx + 1, GEMM_C_DT);
                }
#if GEMM_C_DT == DT_F32
                if (pair) {
                    *(global float2 *) ((global float *) C + idx) = (float2) ((float) v0, (float) v1);
                    continue;
                }
#elif GEMM_C_DT == DT_BF16
                if (pair) {
                    *(global uint *) ((global ushort *) C + idx) = (uint) float_to_bf16((float) v0) | ((uint) float_to_bf16((float) v1) << 16);
                    continue;
                }
#endif
                store_elem(C, idx, GEMM_C_DT, v0);
                if (c + 1 < N) store_elem(C, idx + 1, GEMM_C_DT, v1);
            }
}

/* The arguments of gemm_mma and gemm_wgmma (one host launch serves both): shapes, transposes, scalars, operands with
 * their batch strides, the K split, and the low-rank pair. */
#define MMA_GEMM_ARGS                                                                                                  \
    int M, int N, int K, int transA, int transB, real alpha, real beta, QTENSOR(A), long strideA, QTENSOR(B),           \
        long strideB, TENSOR(C), long strideC, int kSplit, int splits, TENSOR(L), TENSOR(R), int lowK, real lowFactor, \
        int lowRound

__attribute__((reqd_work_group_size(MMA_THREADS, 1, 1)))
kernel void gemm_mma(MMA_GEMM_ARGS) {
    /* one array: the epilogue reuses both operands' buffers (128 x 128 16-bit values) for C */
    local ushort tiles[2 * MMA_STAGES * MMA_TILE] __attribute__((aligned(128)));
    local ushort *As = tiles, *Bs = tiles + MMA_STAGES * MMA_TILE;
    const int tid = get_local_id(0), warp = tid >> 5, lane = tid & 31;
    const int col0 = get_group_id(0) * MMA_BN, row0 = get_group_id(1) * MMA_BM;
    const long z = get_global_id(2), batch = z / splits; /* C tile z: batch, and the K range z % splits */
    const int kBegin = (int) (z - batch * splits) * kSplit, kEnd = min(K, kBegin + kSplit);
    global const ushort *a = (global const ushort *) A + A_off + batch * strideA;
    global const ushort *b = (global const ushort *) B + B_off + batch * strideB;
    /* op(A) is M x K: stored [M][K] (k-contiguous) unless transposed; op(B) is K x N, k-contiguous when B is stored
     * transposed ([N][K]) */
    const int aK = MMA_A_K, bK = MMA_B_K; /* compile-time: the program is built per transpose pair */
    const long lda = transA ? M : K, ldb = transB ? K : N;
    const int wm = (warp & 1) * 64, wn = (warp >> 1) * MMA_WN; /* this warp's 64 x MMA_WN block of the tile */
    const uint aBase = (uint) (size_t) As, bBase = (uint) (size_t) Bs;
    /* the low-rank pair first (in the first K range of a split): its slices, then acc *= lowFactor */
    global const ushort *l = (global const ushort *) L + L_off, *r = (global const ushort *) R + R_off;
    const long ldl = transA ? M : lowK, ldr = transB ? lowK : N;
    const int lowSlices = kBegin == 0 ? (lowK + MMA_BK - 1) / MMA_BK : 0;
    const int slices = lowSlices + (kEnd - kBegin + MMA_BK - 1) / MMA_BK;

    float acc[4][MMA_WN / 8][4]; /* acc[i][j][e]: the layout mma_store_tile reads */
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < MMA_WN / 8; j++) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.f;

#pragma unroll
    for (int s = 0; s < MMA_STAGES - 1; s++) {
        if (s < slices)
            mma_fetch_first(s, lowSlices, a, lda, b, ldb, l, ldl, r, ldr, lowK, kBegin, kEnd, aK, bK, row0, M, col0, N, tid,
                            aBase + 2u * s * MMA_TILE, As + s * MMA_TILE, bBase + 2u * s * MMA_TILE, Bs + s * MMA_TILE, MMA_THREADS, 0);
        asm volatile("cp.async.commit_group;" ::: "memory");
    }
    /* the lane's ldmatrix row and 8-column half: matrices 0..3 of an x4 load come from lanes 0-7, 8-15, 16-23, 24-31 */
    const int lr = lane & 7, lm = lane >> 3;
    for (int s = 0; s < slices; s++) {
        asm volatile("cp.async.wait_group 1;" ::: "memory"); /* MMA_STAGES - 2: all but the newest group done */
        barrier(CLK_LOCAL_MEM_FENCE); /* slice s has arrived for everyone; everyone is done with slice s - 1 */
        { /* queue slice s + STAGES - 1 into the buffer slice s - 1 used */
            const int n = s + MMA_STAGES - 1, buf = n % MMA_STAGES;
            if (n < slices)
                mma_fetch_pair(a, lda, b, ldb, aK, bK, row0, M, col0, N, kBegin + (n - lowSlices) * MMA_BK, kEnd, tid,
                               aBase + 2u * buf * MMA_TILE, As + buf * MMA_TILE, bBase + 2u * buf * MMA_TILE, Bs + buf * MMA_TILE,
                               MMA_THREADS, 0);
            asm volatile("cp.async.commit_group;" ::: "memory");
        }
        const int buf = s % MMA_STAGES;
        const uint at = aBase + 2u * buf * MMA_TILE, bt = bBase + 2u * buf * MMA_TILE;
#pragma unroll
        for (int kk = 0; kk < MMA_BK; kk += 16) {
            uint af[4][4];
#pragma unroll
            for (int i = 0; i < 4; i++) { /* rows wm + 16 i .. + 15, columns kk .. kk + 15 */
#if MMA_A_K
                { /* matrix m: rows + 8 (m & 1), columns + 8 (m >> 1) */
                    const int r = wm + i * 16 + (lm & 1) * 8 + lr, k = kk + (lm >> 1) * 8;
                    tc_ldmatrix(af[i], at + 2u * mma_at_k_contiguous(r, k));
                }
#else
                { /* transposed: matrix m holds rows + 8 (m & 1) x columns + 8 (m >> 1), read from k-rows */
                    const int r = wm + i * 16 + (lm & 1) * 8, k = kk + (lm >> 1) * 8 + lr;
                    tc_ldmatrix_trans(af[i], at + 2u * mma_at_row_contiguous(r, k));
                }
#endif
            }
#pragma unroll
            for (int j = 0; j < MMA_WN / 8; j += 2) { /* columns wn + 8 j .. + 15: B fragments of j from matrices 0, 1, of j + 1 from 2, 3 */
                uint bf[4];
#if MMA_B_K
                { /* op(B)[k][n] = tile[n][k]: matrix m holds n + 8 (m >> 1), k + 8 (m & 1) */
                    const int n = wn + j * 8 + (lm >> 1) * 8 + lr, k = kk + (lm & 1) * 8;
                    tc_ldmatrix(bf, bt + 2u * mma_at_k_contiguous(n, k));
                }
#else
                { /* op(B)[k][n] = tile[k][n], transposing load: matrix m holds k + 8 (m & 1), n + 8 (m >> 1) */
                    const int n = wn + j * 8 + (lm >> 1) * 8, k = kk + (lm & 1) * 8 + lr;
                    tc_ldmatrix_trans(bf, bt + 2u * mma_at_row_contiguous(n, k));
                }
#endif
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    mma_bf16(acc[i][j], af[i], bf[0], bf[1]);
                    mma_bf16(acc[i][j + 1], af[i], bf[2], bf[3]);
                }
            }
        }
        if (s == lowSlices - 1) mma_low_rank_done(&acc[0][0][0], 4 * MMA_WN / 2, lowFactor, lowRound);
    }

    mma_store_tile(&acc[0][0][0], 4, MMA_WN / 8, wm, wn, C, C_off + z * strideC, M, N, row0, col0, alpha, beta, tid,
                   MMA_THREADS, tiles);
}

/* C[b] = alpha * (sum over the splits of part[b * splits + p], in order) + beta * C[b]: the end of a split-K product. */
kernel void gemm_splitk_sum(global const float *part, int splits, long mn, long count, real alpha, real beta, TENSOR(C),
                            long strideC) {
    const long i = get_global_id(0);
    if (i >= count) return;
    const long b = i / mn, e = i - b * mn;
    global const float *p = part + b * splits * mn + e;
    float sum = 0.f;
    for (int s = 0; s < splits; s++) sum += p[s * mn];
    const long idx = C_off + b * strideC + e;
    real v = alpha * (real) sum;
    if (beta != 0) v += beta * load_elem(C, idx, GEMM_C_DT);
    store_elem(C, idx, GEMM_C_DT, v);
}
