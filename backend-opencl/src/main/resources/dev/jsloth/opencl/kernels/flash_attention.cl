/*
 * Causal grouped-query attention on NVIDIA tensor cores from OpenCL C, for 16-bit storage (bf16, or f16 with FA_F16):
 * the FlashAttention-2 kernels of the CUDA backend's flash_attention.cu (its mma.sync kernels, one m16 tile of rows
 * per warp), written with inline PTX (tools/gpu/opencl-ptx-probe: NVIDIA's OpenCL compiler takes it, targets sm_90 on
 * an H200, and ldmatrix / cp.async work on 16-byte-aligned local tiles). The products Q K^T, P V, and in the backward
 * pass K Q^T, V dO^T, P^T dO, dS^T Q, dO V^T and dS K are mma.sync.m16n8k16 with fp32 accumulation; the softmax is
 * online (exp2 with the scale folded in), probabilities are rounded to the storage type only as mma operands, and no
 * T x T matrix reaches global memory. The contract is attention.cl's: q, out, dOut, dq: [batch, seq, qHeads, D];
 * k, v, dk, dv: [batch, kvSeq, kvHeads, D]; lse (F32, natural log) and delta (from attention_backward_delta):
 * [batch, qHeads, seq]; segments (optional, I32 [batch, seq], only with kvSeq == seq). Query i sits at position
 * kvSeq - seq + i and sees key j <= its position within its segment.
 *
 * Built per head dimension FA_D (64 or 128). Work-groups of 128 work-items (4 warps, 16 rows each):
 *   forward: 64 queries of one head, walking the visible key tiles of FA_BK (64 at D = 64, 32 at D = 128);
 *   dK/dV:   64 keys of one query head (GQA: fp32 partials summed per group by flash_group_sum), walking query tiles of
 *            32 (16 at D = 128, K and V held in registers); (the CUDA kernels have since moved to one block per kv head's
 *            group, or chunk of it, summing over its heads in registers: not ported here, so the bits may differ)
 *   dQ:      64 queries of one head, walking the visible key tiles of 32.
 * Local memory (NVIDIA's OpenCL gives a work-group 48 KB): tiles of rows padded to FA_D + 8 16-bit values, so that the
 * 8 row addresses of an ldmatrix fall in distinct banks; streamed tiles double-buffered, the next one copied by
 * cp.async while this one is multiplied. The forward and dQ kernels hold their warp's Q (and dO) rows as mma operand
 * fragments in registers for the whole walk, so those tiles are staged once in the streaming buffers and then
 * overwritten. Every sum runs in a fixed order: results are deterministic. The host (AttentionLauncher) launches these
 * only for 16-bit tensors whose rows start 16-byte aligned.
 */
#ifndef FA_D
#error "FA_D (the head dimension, 64 or 128) must be defined"
#endif

#define FA_LD (FA_D + 8)
#define FA_LOG2E 1.4426950408889634f
#define FA_LN2 0.6931471805599453f
#define FA_BQ 64      /* query rows per forward / dQ work-group, key rows per dK/dV work-group */
#if FA_D == 64
#define FA_BQ_KV 32   /* query rows per streamed tile of dK/dV */
#define FA_KV_HELD 0  /* dK/dV reads K and V from local tiles */
#else
#define FA_BQ_KV 16
#define FA_KV_HELD 1  /* dK/dV holds K and V as mma fragments in registers (the tiles would not fit beside the stream) */
#endif
#define FA_BK_DQ 32   /* key rows per streamed tile of dQ */
#if FA_D == 64
#define FA_BK 64      /* key rows per streamed tile of the forward */
#else
#define FA_BK 32
#endif

#ifdef FA_F16
#define FA_MMA_OP "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32"
#define FA_CVT_OP "cvt.rn.f16x2.f32"
inline void fa_store16(global ushort *p, long i, float v) { vstore_half_rte(v, (size_t) i, (global half *) p); }
#else
#define FA_MMA_OP "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32"
#define FA_CVT_OP "cvt.rn.bf16x2.f32"
inline void fa_store16(global ushort *p, long i, float v) { p[i] = float_to_bf16(v); }
#endif

/* c[0..3] += A (a[0..3]) * B (b0, b1), the m16n8k16 fragment layouts. */
inline void fa_mma(float *c, const uint *a, uint b0, uint b1) {
    asm volatile(FA_MMA_OP " {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Two floats rounded (to nearest even) into one register of two 16-bit values, lo in the low half. */
inline uint fa_pack(float lo, float hi) {
    uint r;
    asm(FA_CVT_OP " %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

inline float fa_shfl_xor(float v, int mask) {
    float r;
    asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=f"(r) : "f"(v), "r"(mask));
    return r;
}

/* The 32-bit local-memory address of a local pointer (what ldmatrix and cp.async take). */
inline uint fa_address(local const void *p) {
    return (uint) (size_t) p;
}

/* Queues a 16-byte global-to-local copy that bypasses registers; !valid writes 16 zero bytes instead. */
inline void fa_copy16(uint dst, global const void *src, int valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0) : "memory");
}

/* The same for 4 bytes. */
inline void fa_copy4(uint dst, global const void *src, int valid) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(dst), "l"(src), "r"(valid ? 4 : 0) : "memory");
}

/* Closes the group of copies queued so far by this work-item; waits until at most N of its newest are in flight. */
#define FA_COMMIT() asm volatile("cp.async.commit_group;" ::: "memory")
#define FA_WAIT(N) asm volatile("cp.async.wait_group " #N ";" ::: "memory")

/* Queues the copy of rows [row0, row0 + count) of head h of a [batch, len, heads, FA_D] tensor into a tile of `rows`
 * rows at local address dst (zeros past count). */
inline void fa_fetch_rows(uint dst, global const ushort *src, int b, int row0, int count, int rows, int len, int heads, int h) {
    const int C = FA_D / 8;
    for (int e = get_local_id(0); e < rows * C; e += get_local_size(0)) {
        const int r = e / C, c = e - r * C;
        const int valid = r < count;
        global const ushort *at = src + ((((long) b * len + row0 + r) * heads + h) * FA_D + c * 8);
        fa_copy16(dst + 2u * (r * FA_LD + c * 8), valid ? at : src, valid);
    }
}

/* Queues the copy of `rows` 4-byte values from src[0 .. count) (zeros past count) to local address dst. */
inline void fa_fetch_words(uint dst, global const void *src, int count, int rows) {
    for (int r = get_local_id(0); r < rows; r += get_local_size(0))
        fa_copy4(dst + 4u * r, r < count ? (global const uint *) src + r : (global const uint *) src, r < count);
}

/* The A fragment (16 rows from r0, columns k0 .. k0 + 15) of a row-major tile at local address `tile`. */
inline void fa_a_fragment(uint *a, uint tile, int r0, int k0) {
    const int lane = get_local_id(0) & 31, m = lane >> 3, r = lane & 7;
    tc_ldmatrix(a, tile + 2u * ((r0 + (m & 1) * 8 + r) * FA_LD + k0 + (m >> 1) * 8));
}

/* B fragments of the 8-column tiles n0 and n0 + 8 at k0 .. k0 + 15 for a product against the rows of a tile
 * (B[k][n] = tile[n][k]): b[0], b[1] for n0, b[2], b[3] for n0 + 8. */
inline void fa_b_fragments_of_rows(uint *b, uint tile, int n0, int k0) {
    const int lane = get_local_id(0) & 31, m = lane >> 3, r = lane & 7;
    tc_ldmatrix(b, tile + 2u * ((n0 + (m >> 1) * 8 + r) * FA_LD + k0 + (m & 1) * 8));
}

/* The same for a product against a tile stored [k][n] (B[k][n] = tile[k][n]), through the transposing load. */
inline void fa_b_fragments_of_columns(uint *b, uint tile, int k0, int n0) {
    const int lane = get_local_id(0) & 31, m = lane >> 3, r = lane & 7;
    tc_ldmatrix_trans(b, tile + 2u * ((k0 + (m & 1) * 8 + r) * FA_LD + n0 + (m >> 1) * 8));
}

/* acc[16 x N] += A[16 x FA_D] * tile^T, A the rows aRow0.. of aTile, tile N rows from n0 (K Q^T, V dO^T). */
#define FA_TIMES_ROWS(N, acc, aTile, aRow0, tile, n0)                                                              \
    _Pragma("unroll") for (int kk_ = 0; kk_ < FA_D / 16; kk_++) {                                                  \
        uint a_[4];                                                                                                \
        fa_a_fragment(a_, (aTile), (aRow0), kk_ * 16);                                                             \
        _Pragma("unroll") for (int nt_ = 0; nt_ < (N) / 8; nt_ += 2) {                                             \
            uint b_[4];                                                                                            \
            fa_b_fragments_of_rows(b_, (tile), (n0) + nt_ * 8, kk_ * 16);                                          \
            fa_mma((acc)[nt_], a_, b_[0], b_[1]);                                                                  \
            fa_mma((acc)[nt_ + 1], a_, b_[2], b_[3]);                                                              \
        }                                                                                                          \
    }

/* acc[16 x N] += A * tile^T with A's FA_D / 16 fragments held in registers (held[kk], one per 16 columns). */
#define FA_TIMES_ROWS_HELD(N, acc, held, tile)                                                                     \
    _Pragma("unroll") for (int kk_ = 0; kk_ < FA_D / 16; kk_++)                                                    \
        _Pragma("unroll") for (int nt_ = 0; nt_ < (N) / 8; nt_ += 2) {                                             \
            uint b_[4];                                                                                            \
            fa_b_fragments_of_rows(b_, (tile), nt_ * 8, kk_ * 16);                                                 \
            fa_mma((acc)[nt_], (held)[kk_], b_[0], b_[1]);                                                         \
            fa_mma((acc)[nt_ + 1], (held)[kk_], b_[2], b_[3]);                                                     \
        }

/* acc[16 x FA_D] += P[16 x K] * tile[0 .. K, 0 .. FA_D) with P given as A fragments (pa[K / 16][4]). */
#define FA_TIMES_TILE(K, acc, pa, tile)                                                                            \
    _Pragma("unroll") for (int kk_ = 0; kk_ < (K) / 16; kk_++)                                                     \
        _Pragma("unroll") for (int nd_ = 0; nd_ < FA_D / 8; nd_ += 2) {                                            \
            uint b_[4];                                                                                            \
            fa_b_fragments_of_columns(b_, (tile), kk_ * 16, nd_ * 8);                                              \
            fa_mma((acc)[nd_], (pa)[kk_], b_[0], b_[1]);                                                           \
            fa_mma((acc)[nd_ + 1], (pa)[kk_], b_[2], b_[3]);                                                       \
        }

/* P (16 x K accumulator fragments p[K / 8][4]) rounded to the storage type as mma A fragments pa[K / 16][4]. */
#define FA_PACK(K, pa, p)                                                                                          \
    _Pragma("unroll") for (int nt_ = 0; nt_ < (K) / 8; nt_++) {                                                    \
        (pa)[nt_ >> 1][2 * (nt_ & 1)] = fa_pack((p)[nt_][0], (p)[nt_][1]);                                         \
        (pa)[nt_ >> 1][2 * (nt_ & 1) + 1] = fa_pack((p)[nt_][2], (p)[nt_][3]);                                     \
    }

/* Writes a warp's 16 x FA_D accumulator (row A times scaleA, row B times scaleB) as rows row0.. of head h of a 16-bit
 * tensor; rows at or past len are skipped. */
inline void fa_store_rows(global ushort *dst, float (*acc)[4], float scaleA, float scaleB, int b, int row0, int len,
                          int heads, int h) {
    const int lane = get_local_id(0) & 31, gr = lane >> 2, tq = lane & 3;
    const int ra = row0 + gr, rb = ra + 8;
#pragma unroll
    for (int nd = 0; nd < FA_D / 8; nd++) {
        const int c = nd * 8 + 2 * tq;
        if (ra < len) {
            const long at = (((long) b * len + ra) * heads + h) * FA_D + c;
            fa_store16(dst, at, acc[nd][0] * scaleA);
            fa_store16(dst, at + 1, acc[nd][1] * scaleA);
        }
        if (rb < len) {
            const long at = (((long) b * len + rb) * heads + h) * FA_D + c;
            fa_store16(dst, at, acc[nd][2] * scaleB);
            fa_store16(dst, at + 1, acc[nd][3] * scaleB);
        }
    }
}

/* The same into an fp32 tensor (the dK/dV partials of a query head). */
inline void fa_store_rows_f32(global float *dst, float (*acc)[4], float scale, int b, int row0, int len, int heads, int h) {
    const int lane = get_local_id(0) & 31, gr = lane >> 2, tq = lane & 3;
    const int ra = row0 + gr, rb = ra + 8;
#pragma unroll
    for (int nd = 0; nd < FA_D / 8; nd++) {
        const int c = nd * 8 + 2 * tq;
        if (ra < len) {
            const long at = (((long) b * len + ra) * heads + h) * FA_D + c;
            dst[at] = acc[nd][0] * scale;
            dst[at + 1] = acc[nd][1] * scale;
        }
        if (rb < len) {
            const long at = (((long) b * len + rb) * heads + h) * FA_D + c;
            dst[at] = acc[nd][2] * scale;
            dst[at + 1] = acc[nd][3] * scale;
        }
    }
}

#define FA_ROWS16(t) ((global const ushort *) (t) + t##_off)

/*
 * Forward: a work-group owns FA_BQ queries of head h (the last query tiles first: they have the most keys), each warp
 * 16 rows, whose Q fragments it holds in registers. Local memory: two buffers of (K, V) tiles of FA_BK rows (the
 * query tile staged first in the second), the queries' segment ids and both buffers' key segment ids.
 */
__attribute__((reqd_work_group_size(128, 1, 1)))
kernel void flash_forward(TENSOR(q), TENSOR(k), TENSOR(v), INTS(seg), int hasSeg, float scale, TENSOR(out), TENSOR(lse),
                          int seq, int kvSeq, int qHeads, int kvHeads) {
    local ushort tiles[4 * FA_BK * FA_LD] __attribute__((aligned(16))); /* K0 V0 K1 V1 */
    local int segQ[FA_BQ] __attribute__((aligned(16)));
    local int segKb[2 * FA_BK] __attribute__((aligned(16)));
    global const ushort *qs = FA_ROWS16(q), *ks = FA_ROWS16(k), *vs = FA_ROWS16(v);
    global const int *segs = seg + seg_off;

    const int b = get_group_id(2), h = get_group_id(1), q0 = (get_num_groups(0) - 1 - get_group_id(0)) * FA_BQ;
    const int g = h / (qHeads / kvHeads), offset = kvSeq - seq;
    const int nq = min(FA_BQ, seq - q0);
    const int warp = get_local_id(0) >> 5, lane = get_local_id(0) & 31, gr = lane >> 2, tq = lane & 3;
    const int w0 = warp * 16; /* this warp's first row in the query tile */
    const float scaleLog2 = scale * FA_LOG2E;
    const int steps = (offset + q0 + nq - 1) / FA_BK + 1; /* key tiles up to the last key any query here sees */
    const uint base = fa_address(tiles), buffer = 2u * 2 * FA_BK * FA_LD; /* bytes per (K, V) buffer */

    fa_fetch_rows(base + buffer, qs, b, q0, nq, FA_BQ, seq, qHeads, h);
    if (hasSeg) fa_fetch_words(fa_address(segQ), segs + (long) b * seq + q0, nq, FA_BQ);
    fa_fetch_rows(base, ks, b, 0, min(FA_BK, kvSeq), FA_BK, kvSeq, kvHeads, g);
    fa_fetch_rows(base + 2u * FA_BK * FA_LD, vs, b, 0, min(FA_BK, kvSeq), FA_BK, kvSeq, kvHeads, g);
    if (hasSeg) fa_fetch_words(fa_address(segKb), segs + (long) b * seq, min(FA_BK, kvSeq), FA_BK);
    FA_COMMIT();
    FA_WAIT(0);
    barrier(CLK_LOCAL_MEM_FENCE);
    uint qf[FA_D / 16][4]; /* Q's A fragments, one per 16 columns */
#pragma unroll
    for (int kk = 0; kk < FA_D / 16; kk++) fa_a_fragment(qf[kk], base + buffer, w0, kk * 16);
    barrier(CLK_LOCAL_MEM_FENCE); /* every warp has its fragments before the second buffer is refilled */

    const int rowA = q0 + w0 + gr, rowB = rowA + 8; /* this lane's rows */
    const int warpLastRow = min(q0 + w0 + 15, seq - 1);
    const int segA = hasSeg ? segQ[w0 + gr] : 0, segB = hasSeg ? segQ[w0 + gr + 8] : 0;
    float o[FA_D / 8][4];
#pragma unroll
    for (int nd = 0; nd < FA_D / 8; nd++) o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};

    for (int it = 0; it < steps; it++) {
        const int k0 = it * FA_BK, buf = it & 1;
        if (it + 1 < steps) { /* the next tile into the other buffer (free since the barrier ending the last step) */
            const int n0 = k0 + FA_BK, nn = min(FA_BK, kvSeq - n0);
            const uint other = base + (buf ^ 1) * buffer;
            fa_fetch_rows(other, ks, b, n0, nn, FA_BK, kvSeq, kvHeads, g);
            fa_fetch_rows(other + 2u * FA_BK * FA_LD, vs, b, n0, nn, FA_BK, kvSeq, kvHeads, g);
            if (hasSeg) fa_fetch_words(fa_address(segKb + (buf ^ 1) * FA_BK), segs + (long) b * seq + n0, nn, FA_BK);
        }
        FA_COMMIT();
        FA_WAIT(1); /* this tile's copies are done (the next tile's may still run) */
        barrier(CLK_LOCAL_MEM_FENCE);
        const uint Ks = base + buf * buffer, Vs = Ks + 2u * FA_BK * FA_LD;
        local const int *segK = segKb + buf * FA_BK;
        if (k0 <= offset + warpLastRow) { /* some key of this tile is visible to this warp's rows */
            float s[FA_BK / 8][4];
#pragma unroll
            for (int nt = 0; nt < FA_BK / 8; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
            FA_TIMES_ROWS_HELD(FA_BK, s, qf, Ks)
#pragma unroll
            for (int nt = 0; nt < FA_BK / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[nt][e] *= scaleLog2;
            const int first = q0 + w0; /* a tile every key of which all the warp's rows see needs no mask */
            if (hasSeg || k0 + FA_BK > kvSeq || k0 + FA_BK - 1 > offset + first || first + 15 >= seq) {
                /* a row in range sees the keys up to offset + row: the last, counted from this lane's first column
                 * k0 + 2 tq; -1 (none) for a row past the end */
                const int lastA = rowA < seq ? offset + rowA - k0 - 2 * tq : -1;
                const int lastB = rowB < seq ? offset + rowB - k0 - 2 * tq : -1;
#pragma unroll
                for (int nt = 0; nt < FA_BK / 8; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        if (nt * 8 + (e & 1) > (e < 2 ? lastA : lastB)) s[nt][e] = -INFINITY;
                if (hasSeg) { /* and only those of its own sequence of the pack */
#pragma unroll
                    for (int nt = 0; nt < FA_BK / 8; nt++)
#pragma unroll
                        for (int e = 0; e < 4; e++)
                            if (segK[nt * 8 + 2 * tq + (e & 1)] != (e < 2 ? segA : segB)) s[nt][e] = -INFINITY;
                }
            }
            float mx[2] = {-INFINITY, -INFINITY}, rowBase[2];
#pragma unroll
            for (int nt = 0; nt < FA_BK / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) mx[e >> 1] = fmax(mx[e >> 1], s[nt][e]);
#pragma unroll
            for (int r = 0; r < 2; r++) { /* a row's 4 lanes (tq = 0..3) agree on its maximum */
                mx[r] = fmax(mx[r], fa_shfl_xor(mx[r], 1));
                mx[r] = fmax(mx[r], fa_shfl_xor(mx[r], 2));
                const float mNew = fmax(m[r], mx[r]);
                rowBase[r] = mNew == -INFINITY ? 0.f : mNew;
                const float alpha = exp2(m[r] - rowBase[r]);
                m[r] = mNew;
                l[r] *= alpha;
#pragma unroll
                for (int nd = 0; nd < FA_D / 8; nd++) {
                    o[nd][2 * r] *= alpha;
                    o[nd][2 * r + 1] *= alpha;
                }
            }
#pragma unroll
            for (int nt = 0; nt < FA_BK / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    s[nt][e] = exp2(s[nt][e] - rowBase[e >> 1]);
                    l[e >> 1] += s[nt][e];
                }
            uint pa[FA_BK / 16][4]; /* P as mma A fragments, rounded to the storage type */
            FA_PACK(FA_BK, pa, s)
            FA_TIMES_TILE(FA_BK, o, pa, Vs)
        }
        barrier(CLK_LOCAL_MEM_FENCE); /* every warp is done with this buffer before the next step refills it */
    }
#pragma unroll
    for (int r = 0; r < 2; r++) { /* each lane summed its own columns: add up a row's 4 lanes */
        l[r] += fa_shfl_xor(l[r], 1);
        l[r] += fa_shfl_xor(l[r], 2);
    }
    fa_store_rows((global ushort *) out + out_off, o, l[0] > 0.f ? 1.f / l[0] : 0.f, l[1] > 0.f ? 1.f / l[1] : 0.f, b,
                  q0 + w0, seq, qHeads, h);
    if (tq == 0) {
        global float *lseRows = (global float *) lse + lse_off + ((long) b * qHeads + h) * seq;
        if (rowA < seq) lseRows[rowA] = l[0] > 0.f ? (m[0] + log2(l[0])) * FA_LN2 : -INFINITY;
        if (rowB < seq) lseRows[rowB] = l[1] > 0.f ? (m[1] + log2(l[1])) * FA_LN2 : -INFINITY;
    }
}

/*
 * dK and dV of FA_BQ keys for one query head: written to dk/dv when every kv head serves one query head, else as fp32
 * partials [batch, seq, qHeads, FA_D] that flash_group_sum adds up over each group in a fixed order. Local memory:
 * the K and V tiles, two buffers of (Q, dO) tiles of FA_BQ_KV rows, two of their lse and delta, two of their segment
 * ids, and the keys' segment ids. At D = 128 (FA_KV_HELD) each warp holds its 16 rows of K and V as mma A fragments
 * (64 registers), loaded once from tiles staged where the (Q, dO) buffers then stream. P^T = exp(scale s - lse) and dS^T = P^T (dP^T - delta) per warp of 16 keys, zero
 * where the key is not visible: key j is visible to query i iff j <= i < seq and, with segments, both lie in one
 * sequence of the pack.
 */
__attribute__((reqd_work_group_size(128, 1, 1)))
kernel void flash_backward_dkdv(TENSOR(dOut), TENSOR(q), TENSOR(k), TENSOR(v), INTS(seg), int hasSeg, float scale,
                                TENSOR(lse), global const float *delta, TENSOR(dk), TENSOR(dv), global float *dkPart,
                                global float *dvPart, int partial, int seq, int qHeads, int kvHeads) {
#if FA_KV_HELD
    local ushort tiles[2 * FA_BQ * FA_LD] __attribute__((aligned(16))); /* K V, then (Q0 dO0) (Q1 dO1) */
#else
    local ushort tiles[(2 * FA_BQ + 4 * FA_BQ_KV) * FA_LD] __attribute__((aligned(16))); /* K V (Q0 dO0) (Q1 dO1) */
#endif
    local float lseb[2 * FA_BQ_KV] __attribute__((aligned(16)));
    local float deltab[2 * FA_BQ_KV] __attribute__((aligned(16)));
    local int segQb[2 * FA_BQ_KV] __attribute__((aligned(16)));
    local int segK[FA_BQ] __attribute__((aligned(16)));
    global const ushort *dos = FA_ROWS16(dOut), *qs = FA_ROWS16(q), *ks = FA_ROWS16(k), *vs = FA_ROWS16(v);
    global const int *segs = seg + seg_off;
    global const float *lses = (global const float *) lse + lse_off;

    const int b = get_group_id(2), h = get_group_id(1), k0 = get_group_id(0) * FA_BQ; /* first key tiles: most queries */
    const int nk = min(FA_BQ, seq - k0), g = h / (qHeads / kvHeads);
    const int warp = get_local_id(0) >> 5, lane = get_local_id(0) & 31, gr = lane >> 2, tq = lane & 3;
    const float scaleLog2 = scale * FA_LOG2E;
    const int steps = (seq - k0 + FA_BQ_KV - 1) / FA_BQ_KV; /* query tiles from k0 on */
    const uint Ks = fa_address(tiles), Vs = Ks + 2u * FA_BQ * FA_LD;
    const uint buffer = 2u * 2 * FA_BQ_KV * FA_LD; /* bytes per (Q, dO) buffer */

    fa_fetch_rows(Ks, ks, b, k0, nk, FA_BQ, seq, kvHeads, g);
    fa_fetch_rows(Vs, vs, b, k0, nk, FA_BQ, seq, kvHeads, g);
    if (hasSeg) fa_fetch_words(fa_address(segK), segs + (long) b * seq + k0, nk, FA_BQ);
#if FA_KV_HELD
    FA_COMMIT();
    FA_WAIT(0);
    barrier(CLK_LOCAL_MEM_FENCE);
    uint kf[FA_D / 16][4], vf[FA_D / 16][4]; /* this warp's K and V rows as A fragments, one per 16 columns */
#pragma unroll
    for (int kk = 0; kk < FA_D / 16; kk++) {
        fa_a_fragment(kf[kk], Ks, (get_local_id(0) >> 5) * 16, kk * 16);
        fa_a_fragment(vf[kk], Vs, (get_local_id(0) >> 5) * 16, kk * 16);
    }
    barrier(CLK_LOCAL_MEM_FENCE); /* the K and V tiles are free for the query stream */
    const uint buffers = Ks;
#else
    const uint buffers = Vs + 2u * FA_BQ * FA_LD;
#endif
    { /* the first query tile, k0 on (the next is queued in the loop) */
        const int nq = min(FA_BQ_KV, seq - k0);
        fa_fetch_rows(buffers, qs, b, k0, nq, FA_BQ_KV, seq, qHeads, h);
        fa_fetch_rows(buffers + 2u * FA_BQ_KV * FA_LD, dos, b, k0, nq, FA_BQ_KV, seq, qHeads, h);
        const long r = ((long) b * qHeads + h) * seq + k0;
        fa_fetch_words(fa_address(lseb), lses + r, nq, FA_BQ_KV);
        fa_fetch_words(fa_address(deltab), delta + r, nq, FA_BQ_KV);
        if (hasSeg) fa_fetch_words(fa_address(segQb), segs + (long) b * seq + k0, nq, FA_BQ_KV);
    }
    FA_COMMIT();

    float dka[FA_D / 8][4], dva[FA_D / 8][4];
#pragma unroll
    for (int nd = 0; nd < FA_D / 8; nd++)
#pragma unroll
        for (int e = 0; e < 4; e++) dka[nd][e] = dva[nd][e] = 0.f;
    const int warpFirstKey = k0 + warp * 16, keyA = warpFirstKey + gr, keyLocalA = warp * 16 + gr;

    for (int step = 0; step < steps; step++) {
        const int buf = step & 1, q0 = k0 + step * FA_BQ_KV, nq = min(FA_BQ_KV, seq - q0);
        if (step + 1 < steps) {
            const int n0 = q0 + FA_BQ_KV, nn = min(FA_BQ_KV, seq - n0), o = (buf ^ 1) * FA_BQ_KV;
            const uint other = buffers + (buf ^ 1) * buffer;
            fa_fetch_rows(other, qs, b, n0, nn, FA_BQ_KV, seq, qHeads, h);
            fa_fetch_rows(other + 2u * FA_BQ_KV * FA_LD, dos, b, n0, nn, FA_BQ_KV, seq, qHeads, h);
            const long r = ((long) b * qHeads + h) * seq + n0;
            fa_fetch_words(fa_address(lseb + o), lses + r, nn, FA_BQ_KV);
            fa_fetch_words(fa_address(deltab + o), delta + r, nn, FA_BQ_KV);
            if (hasSeg) fa_fetch_words(fa_address(segQb + o), segs + (long) b * seq + n0, nn, FA_BQ_KV);
        }
        FA_COMMIT();
        FA_WAIT(1);
        barrier(CLK_LOCAL_MEM_FENCE);
        if (warpFirstKey <= q0 + nq - 1 && warpFirstKey < seq) { /* some query here sees a key of this warp */
            const uint Qs = buffers + buf * buffer, dOs = Qs + 2u * FA_BQ_KV * FA_LD;
            local const float *lseRow = lseb + buf * FA_BQ_KV, *deltaRow = deltab + buf * FA_BQ_KV;
            local const int *segQ = segQb + buf * FA_BQ_KV;
            float s[FA_BQ_KV / 8][4], dp[FA_BQ_KV / 8][4];
#pragma unroll
            for (int nt = 0; nt < FA_BQ_KV / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[nt][e] = dp[nt][e] = 0.f;
#if FA_KV_HELD
            FA_TIMES_ROWS_HELD(FA_BQ_KV, s, kf, Qs)
            FA_TIMES_ROWS_HELD(FA_BQ_KV, dp, vf, dOs)
#else
            FA_TIMES_ROWS(FA_BQ_KV, s, Ks, warp * 16, Qs, 0)
            FA_TIMES_ROWS(FA_BQ_KV, dp, Vs, warp * 16, dOs, 0)
#endif
            /* P^T: s scaleLog2 - lse LOG2E as one fma after the rounded product lse LOG2E */
#pragma unroll
            for (int nt = 0; nt < FA_BQ_KV / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    s[nt][e] = exp2(fma(s[nt][e], scaleLog2, -(lseRow[nt * 8 + 2 * tq + (e & 1)] * FA_LOG2E)));
            if (q0 < warpFirstKey + 15) { /* row A sees the local columns from firstA on, row B from firstA + 8 */
                const int firstA = keyA - q0 - 2 * tq, firstB = firstA + 8;
#pragma unroll
                for (int nt = 0; nt < FA_BQ_KV / 8; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        if (nt * 8 + (e & 1) < (e < 2 ? firstA : firstB)) s[nt][e] = 0.f;
            }
            if (q0 + FA_BQ_KV > seq) { /* no key sees a query at or past seq */
                const int end = seq - q0 - 2 * tq;
#pragma unroll
                for (int nt = 0; nt < FA_BQ_KV / 8; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        if (nt * 8 + (e & 1) >= end) s[nt][e] = 0.f;
            }
            if (hasSeg) {
                const int segA = segK[keyLocalA], segB = segK[keyLocalA + 8];
#pragma unroll
                for (int nt = 0; nt < FA_BQ_KV / 8; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        if (segQ[nt * 8 + 2 * tq + (e & 1)] != (e < 2 ? segA : segB)) s[nt][e] = 0.f;
            }
#pragma unroll
            for (int nt = 0; nt < FA_BQ_KV / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) dp[nt][e] = s[nt][e] * (dp[nt][e] - deltaRow[nt * 8 + 2 * tq + (e & 1)]);
            uint pa[FA_BQ_KV / 16][4];
            FA_PACK(FA_BQ_KV, pa, s)
            FA_TIMES_TILE(FA_BQ_KV, dva, pa, dOs)
            FA_PACK(FA_BQ_KV, pa, dp)
            FA_TIMES_TILE(FA_BQ_KV, dka, pa, Qs)
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (!partial) {
        fa_store_rows((global ushort *) dk + dk_off, dka, scale, scale, b, warpFirstKey, seq, kvHeads, g);
        fa_store_rows((global ushort *) dv + dv_off, dva, 1.f, 1.f, b, warpFirstKey, seq, kvHeads, g);
    } else {
        fa_store_rows_f32(dkPart, dka, scale, b, warpFirstKey, seq, qHeads, h);
        fa_store_rows_f32(dvPart, dva, 1.f, b, warpFirstKey, seq, qHeads, h);
    }
}

/* delta [batch, qHeads, seq] (fp32) = the row dot products of dOut and out, FA_D / 8 work-items per row reading 16
 * bytes of each, their partial sums added by shuffles (a row's work-items are lanes of one warp). */
kernel void flash_delta(TENSOR(dOut), TENSOR(out), global float *delta, long rows, int seq, int qHeads) {
    const int L = FA_D / 8;
    const long gid = get_global_id(0), r = gid / L; /* r = (b * seq + i) * qHeads + h */
    const int c = (int) (gid - r * L);
    float sum = 0.f;
    if (r < rows) {
        const long at = r * FA_D + c * 8;
#ifdef FA_F16
        for (int e = 0; e < 8; e++)
            sum = fma(vload_half((size_t) (at + e), (global const half *) dOut + dOut_off),
                      vload_half((size_t) (at + e), (global const half *) out + out_off), sum);
#else
        const uint4 x = *(global const uint4 *) (FA_ROWS16(dOut) + at), y = *(global const uint4 *) (FA_ROWS16(out) + at);
        const uint xs[4] = {x.x, x.y, x.z, x.w}, ys[4] = {y.x, y.y, y.z, y.w};
#pragma unroll
        for (int e = 0; e < 4; e++) {
            sum = fma(as_float(xs[e] << 16), as_float(ys[e] << 16), sum);
            sum = fma(as_float(xs[e] & 0xFFFF0000u), as_float(ys[e] & 0xFFFF0000u), sum);
        }
#endif
    }
#pragma unroll
    for (int m = L / 2; m > 0; m >>= 1) sum += fa_shfl_xor(sum, m);
    if (r < rows && c == 0) {
        const long bi = r / qHeads, b = bi / seq;
        const int h = (int) (r - bi * qHeads), i = (int) (bi - b * seq);
        delta[(b * qHeads + h) * seq + i] = sum;
    }
}

/* dk (or dv) [batch, seq, kvHeads, FA_D] = the sum over each group's query heads of the fp32 partials, in head order. */
kernel void flash_group_sum(global const float *part, TENSOR(dst), long kvRows, int group) {
    const long i = get_global_id(0);
    if (i >= kvRows * FA_D) return;
    const long row = i / FA_D; /* (b * seq + s) * kvHeads + g */
    const int d = (int) (i - row * FA_D);
    const long first = row * group * FA_D + d; /* query head g * group + j sits at row * group + j */
    float sum = 0.f;
    for (int j = 0; j < group; j++) sum += part[first + (long) j * FA_D];
    fa_store16((global ushort *) dst + dst_off, i, sum);
}

/*
 * dQ of FA_BQ queries of head h, each warp 16 rows whose Q and dO fragments it holds in registers (the two tiles are
 * staged once in the streaming buffers), walking the visible key tiles of FA_BK_DQ. Local memory: two buffers of (K, V)
 * tiles, the queries' segment ids and two buffers of the keys'.
 */
__attribute__((reqd_work_group_size(128, 1, 1)))
kernel void flash_backward_dq(TENSOR(dOut), TENSOR(q), TENSOR(k), TENSOR(v), INTS(seg), int hasSeg, float scale,
                              TENSOR(lse), global const float *delta, TENSOR(dq), int seq, int qHeads, int kvHeads) {
    local ushort tiles[4 * FA_BK_DQ * FA_LD] __attribute__((aligned(16))); /* K0 V0 K1 V1; Q and dO first */
    local int segQ[FA_BQ] __attribute__((aligned(16)));
    local int segKb[2 * FA_BK_DQ] __attribute__((aligned(16)));
    global const ushort *dos = FA_ROWS16(dOut), *qs = FA_ROWS16(q), *ks = FA_ROWS16(k), *vs = FA_ROWS16(v);
    global const int *segs = seg + seg_off;
    global const float *lses = (global const float *) lse + lse_off;

    const int b = get_group_id(2), h = get_group_id(1), q0 = (get_num_groups(0) - 1 - get_group_id(0)) * FA_BQ;
    const int g = h / (qHeads / kvHeads);
    const int nq = min(FA_BQ, seq - q0);
    const int warp = get_local_id(0) >> 5, lane = get_local_id(0) & 31, gr = lane >> 2, tq = lane & 3;
    const int w0 = warp * 16;
    const float scaleLog2 = scale * FA_LOG2E;
    const int steps = (q0 + nq - 1) / FA_BK_DQ + 1;
    const uint base = fa_address(tiles), buffer = 2u * 2 * FA_BK_DQ * FA_LD; /* bytes per (K, V) buffer */

    /* Q and dO (2 x FA_BQ rows = the 4 x FA_BK_DQ rows of both buffers) first, into registers */
    fa_fetch_rows(base, qs, b, q0, nq, FA_BQ, seq, qHeads, h);
    fa_fetch_rows(base + 2u * FA_BQ * FA_LD, dos, b, q0, nq, FA_BQ, seq, qHeads, h);
    if (hasSeg) fa_fetch_words(fa_address(segQ), segs + (long) b * seq + q0, nq, FA_BQ);
    FA_COMMIT();
    FA_WAIT(0);
    barrier(CLK_LOCAL_MEM_FENCE);
    uint qf[FA_D / 16][4], dof[FA_D / 16][4];
#pragma unroll
    for (int kk = 0; kk < FA_D / 16; kk++) {
        fa_a_fragment(qf[kk], base, w0, kk * 16);
        fa_a_fragment(dof[kk], base + 2u * FA_BQ * FA_LD, w0, kk * 16);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    fa_fetch_rows(base, ks, b, 0, min(FA_BK_DQ, seq), FA_BK_DQ, seq, kvHeads, g);
    fa_fetch_rows(base + 2u * FA_BK_DQ * FA_LD, vs, b, 0, min(FA_BK_DQ, seq), FA_BK_DQ, seq, kvHeads, g);
    if (hasSeg) fa_fetch_words(fa_address(segKb), segs + (long) b * seq, min(FA_BK_DQ, seq), FA_BK_DQ);
    FA_COMMIT();

    /* this lane's rows A and B: their lse (times LOG2E) and delta; the key tiles at k0 >= maskFrom need a mask (keys
     * past the warp's first row, or some row past the end); row A sees, in the tile at k0 counted from this lane's
     * first column 2 tq, the keys up to lastA - k0 (none: -1 for a row past the end) */
    const int first = q0 + w0, rowA = first + gr, rowB = rowA + 8;
    const long statA = ((long) b * qHeads + h) * seq + rowA, statB = statA + 8;
    const float lseA = rowA < seq ? lses[statA] * FA_LOG2E : 0.f, lseB = rowB < seq ? lses[statB] * FA_LOG2E : 0.f;
    const float deltaA = rowA < seq ? delta[statA] : 0.f, deltaB = rowB < seq ? delta[statB] : 0.f;
    const int maskFrom = first + 15 < seq ? first - FA_BK_DQ + 2 : 0;
    const int lastA = rowA < seq ? rowA - 2 * tq : -1, lastB = rowB < seq ? rowB - 2 * tq : -1;
    const int segA = hasSeg ? segQ[w0 + gr] : 0, segB = hasSeg ? segQ[w0 + gr + 8] : 0;
    const int warpLastRow = min(q0 + w0 + 15, seq - 1);

    float dqa[FA_D / 8][4];
#pragma unroll
    for (int nd = 0; nd < FA_D / 8; nd++) dqa[nd][0] = dqa[nd][1] = dqa[nd][2] = dqa[nd][3] = 0.f;

    for (int it = 0; it < steps; it++) {
        const int k0 = it * FA_BK_DQ, buf = it & 1;
        if (it + 1 < steps) {
            const int n0 = k0 + FA_BK_DQ, nn = min(FA_BK_DQ, seq - n0);
            const uint other = base + (buf ^ 1) * buffer;
            fa_fetch_rows(other, ks, b, n0, nn, FA_BK_DQ, seq, kvHeads, g);
            fa_fetch_rows(other + 2u * FA_BK_DQ * FA_LD, vs, b, n0, nn, FA_BK_DQ, seq, kvHeads, g);
            if (hasSeg) fa_fetch_words(fa_address(segKb + (buf ^ 1) * FA_BK_DQ), segs + (long) b * seq + n0, nn, FA_BK_DQ);
        }
        FA_COMMIT();
        FA_WAIT(1);
        barrier(CLK_LOCAL_MEM_FENCE);
        if (k0 <= warpLastRow) { /* some row of the warp lies at or past this tile's first key */
            const uint Ks = base + buf * buffer, Vs = Ks + 2u * FA_BK_DQ * FA_LD;
            float s[FA_BK_DQ / 8][4], dp[FA_BK_DQ / 8][4];
#pragma unroll
            for (int nt = 0; nt < FA_BK_DQ / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[nt][e] = dp[nt][e] = 0.f;
            FA_TIMES_ROWS_HELD(FA_BK_DQ, s, qf, Ks)
            FA_TIMES_ROWS_HELD(FA_BK_DQ, dp, dof, Vs)
#pragma unroll
            for (int nt = 0; nt < FA_BK_DQ / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) /* P, with the one rounding of dK/dV's */
                    s[nt][e] = exp2(fma(s[nt][e], scaleLog2, -(e < 2 ? lseA : lseB)));
            if (k0 >= maskFrom) { /* local column c = nt 8 + (e & 1) is key k0 + 2 tq + c */
                const int lastTileA = lastA - k0, lastTileB = lastB - k0;
#pragma unroll
                for (int nt = 0; nt < FA_BK_DQ / 8; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        if (nt * 8 + (e & 1) > (e < 2 ? lastTileA : lastTileB)) s[nt][e] = 0.f;
            }
            if (hasSeg) {
                local const int *segK = segKb + buf * FA_BK_DQ;
#pragma unroll
                for (int nt = 0; nt < FA_BK_DQ / 8; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        if (segK[nt * 8 + 2 * tq + (e & 1)] != (e < 2 ? segA : segB)) s[nt][e] = 0.f;
            }
#pragma unroll
            for (int nt = 0; nt < FA_BK_DQ / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) dp[nt][e] = s[nt][e] * (dp[nt][e] - (e < 2 ? deltaA : deltaB)); /* dS */
            uint ds[FA_BK_DQ / 16][4];
            FA_PACK(FA_BK_DQ, ds, dp)
            FA_TIMES_TILE(FA_BK_DQ, dqa, ds, Ks)
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    fa_store_rows((global ushort *) dq + dq_off, dqa, scale, scale, b, q0 + w0, seq, qHeads, h);
}
