/*
 * C = alpha * op(A) op(B) + beta * C for BF16 A and B on NVIDIA GPUs of compute capability 8.0 or newer, on the
 * tensor cores, batched over the third grid dimension like gemm.cl. NVIDIA's OpenCL compiler takes inline PTX
 * (tools/gpu/opencl-ptx-probe): the products are mma.sync.m16n8k16 with bf16 operands and fp32 accumulation. ldmatrix
 * on local memory faults there, so each warp reads its fragments with plain 32-bit local loads, from tiles stored
 * k-contiguous (A as [m][k], op(B) as [n][k]) with rows padded to MMA_LD values: the 8 rows x 4 words of a fragment
 * load fall in 32 distinct banks.
 *
 * A work-group of 256 work-items (8 warps, 2 along M x 4 along N) computes a 128 x 128 tile of C, each warp 64 x 32
 * (4 x 4 mma tiles, 64 accumulators per work-item). K is walked 32 at a time; the next slice of op(A) and op(B) is
 * loaded into registers while the current one is multiplied, then stored to the other of two local buffers (one
 * barrier per slice). A source that is contiguous along k (A, or a transposed B) is read 8 values at a time and
 * stored as is; one contiguous along m or n (a transposed A, or B) is read 8 values at a time along that dimension
 * and stored transposed; a chunk not 16-byte aligned in global memory (a leading dimension not a multiple of 8) is
 * read value by value. Edges are zero-filled, so any M, N, K work. Only NVIDIA devices build this program.
 */
#if !defined(GEMM_C_DT)
#error "GEMM_C_DT (storage type code of C) must be defined"
#endif

#define MMA_BM 128
#define MMA_BN 128
#define MMA_BK 32
#define MMA_LD (MMA_BK + 8)
#define MMA_TILE (MMA_BM * MMA_LD)

/* c[0..3] += A (a0..a3: rows g and g + 8, columns 2t.. and 2t + 8..) * B (b0, b1: rows 2t.. and 2t + 8.., column g). */
#define MMA_BF16(c, a0, a1, a2, a3, b0, b1)                                                                          \
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};" \
                 : "+f"((c)[0]), "+f"((c)[1]), "+f"((c)[2]), "+f"((c)[3])                                            \
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1))

inline uint mma_pair(local const ushort *p) {
    return *(local const uint *) p;
}

/*
 * Loads this work-item's two 8-value chunks of a 128 x 32 slice of op(X) (rows r0.., columns k0..; X has `rows` rows
 * and K columns in op form, leading dimension ld in storage). kContig: X is stored [rows][K]; else [K][rows].
 */
inline void mma_load(global const ushort *x, long ld, int kContig, int r0, int rows, int k0, int K, int tid, ushort8 *v) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int ch = tid + i * 256;
        int r, k; // the chunk's first element: row r, column k of the slice; 8 values along k (kContig) or along r
        if (kContig) {
            r = ch >> 2;
            k = (ch & 3) * 8;
        } else {
            k = ch >> 4;
            r = (ch & 15) * 8;
        }
        const int gr = r0 + r, gk = k0 + k;
        global const ushort *at = x + (kContig ? (long) gr * ld + gk : (long) gk * ld + gr);
        // one 16-byte load where the chunk is whole and 16-byte aligned, else 8 loads
        if ((kContig ? (gr < rows && gk + 8 <= K) : (gk < K && gr + 8 <= rows)) && ((size_t) at & 15) == 0) {
            v[i] = as_ushort8(*(global const uint4 *) at);
        } else {
            ushort e[8];
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const int rr = kContig ? gr : gr + j, kk = kContig ? gk + j : gk;
                e[j] = (rr < rows && kk < K) ? x[kContig ? (long) rr * ld + kk : (long) kk * ld + rr] : (ushort) 0;
            }
            v[i] = (ushort8) (e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]);
        }
    }
}

/* Stores the two chunks into a local slice laid out [row][k] with rows MMA_LD apart. */
inline void mma_store(local ushort *tile, int kContig, int tid, const ushort8 *v) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int ch = tid + i * 256;
        if (kContig) { // 16-byte aligned: rows are 80 bytes apart, the tiles 16-byte aligned
            *(local uint4 *) (tile + (ch >> 2) * MMA_LD + (ch & 3) * 8) = as_uint4(v[i]);
        } else {
            const int k = ch >> 4, r = (ch & 15) * 8;
            local ushort *t = tile + r * MMA_LD + k;
            t[0] = v[i].s0; t[MMA_LD] = v[i].s1; t[2 * MMA_LD] = v[i].s2; t[3 * MMA_LD] = v[i].s3;
            t[4 * MMA_LD] = v[i].s4; t[5 * MMA_LD] = v[i].s5; t[6 * MMA_LD] = v[i].s6; t[7 * MMA_LD] = v[i].s7;
        }
    }
}

__attribute__((reqd_work_group_size(256, 1, 1)))
kernel void gemm_mma(int M, int N, int K, int transA, int transB, real alpha, real beta,
                     QTENSOR(A), long strideA, QTENSOR(B), long strideB, TENSOR(C), long strideC) {
    local ushort As[2 * MMA_TILE] __attribute__((aligned(16)));
    local ushort Bs[2 * MMA_TILE] __attribute__((aligned(16)));
    const int tid = get_local_id(0), warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int col0 = get_group_id(0) * MMA_BN, row0 = get_group_id(1) * MMA_BM;
    const long batch = get_global_id(2);
    global const ushort *a = (global const ushort *) A + A_off + batch * strideA;
    global const ushort *b = (global const ushort *) B + B_off + batch * strideB;
    // op(A) is M x K: stored [M][K] (k-contiguous) unless transposed; op(B) is K x N, kept as [N][K]: k-contiguous
    // when B is stored transposed ([N][K])
    const int aK = !transA, bK = transB;
    const long lda = transA ? M : K, ldb = transB ? K : N;
    const int wm = (warp & 1) * 64, wn = (warp >> 1) * 32; // this warp's 64 x 32 block of the tile

    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.f;

    ushort8 va[2], vb[2];
    mma_load(a, lda, aK, row0, M, 0, K, tid, va);
    mma_load(b, ldb, bK, col0, N, 0, K, tid, vb);
    mma_store(As, aK, tid, va);
    mma_store(Bs, bK, tid, vb);
    barrier(CLK_LOCAL_MEM_FENCE);
    const int slices = (K + MMA_BK - 1) / MMA_BK;
    for (int s = 0; s < slices; s++) {
        const int buf = s & 1;
        if (s + 1 < slices) { // the next slice into registers while this one is multiplied
            mma_load(a, lda, aK, row0, M, (s + 1) * MMA_BK, K, tid, va);
            mma_load(b, ldb, bK, col0, N, (s + 1) * MMA_BK, K, tid, vb);
        }
        local const ushort *at = As + buf * MMA_TILE + (wm + g) * MMA_LD + 2 * t;
        local const ushort *bt = Bs + buf * MMA_TILE + (wn + g) * MMA_LD + 2 * t;
#pragma unroll
        for (int kk = 0; kk < MMA_BK; kk += 16) {
            uint af[4][4], bf[4][2];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                local const ushort *p = at + i * 16 * MMA_LD + kk;
                af[i][0] = mma_pair(p);
                af[i][1] = mma_pair(p + 8 * MMA_LD);
                af[i][2] = mma_pair(p + 8);
                af[i][3] = mma_pair(p + 8 * MMA_LD + 8);
            }
#pragma unroll
            for (int j = 0; j < 4; j++) {
                local const ushort *p = bt + j * 8 * MMA_LD + kk;
                bf[j][0] = mma_pair(p);
                bf[j][1] = mma_pair(p + 8);
            }
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) MMA_BF16(acc[i][j], af[i][0], af[i][1], af[i][2], af[i][3], bf[j][0], bf[j][1]);
        }
        if (s + 1 < slices) {
            mma_store(As + (buf ^ 1) * MMA_TILE, aK, tid, va);
            mma_store(Bs + (buf ^ 1) * MMA_TILE, bK, tid, vb);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    const long cBase = batch * strideC;
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int r = row0 + wm + i * 16 + g + (e >> 1) * 8, c = col0 + wn + j * 8 + 2 * t + (e & 1);
                if (r < M && c < N) {
                    const long idx = C_off + cBase + (long) r * N + c;
                    real v = alpha * (real) acc[i][j][e];
                    if (beta != 0) v += beta * load_elem(C, idx, GEMM_C_DT);
                    store_elem(C, idx, GEMM_C_DT, v);
                }
            }
}
