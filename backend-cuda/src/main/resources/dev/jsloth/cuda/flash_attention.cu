// Causal grouped-query attention on tensor cores for 16-bit storage (bf16, f16), FlashAttention-2 style: the
// products Q K^T, P V, and in the backward pass K Q^T, V dO^T, P^T dO, dS^T Q, dO V^T and dS K run as warp-level
// mma.sync m16n8k16 instructions with fp32 accumulation (on compute capability 9.0 as warpgroup wgmma instructions
// instead, same bits: the Hopper section below); the softmax is online (exp2 with the scale folded in),
// probabilities are rounded to the storage type only as mma operands, and no T x T matrix ever reaches global
// memory. The same contract as attention.cu (which stays the path for F32/F64 and other head dimensions):
// q, out, dOut, dq: [batch, seq, qHeads, D]; k, v, dk, dv: [batch, kvSeq, kvHeads, D]; lse (fp32, natural log):
// [batch, qHeads, seq]; delta (fp32, from attention_delta_kernel): same; segments (optional, I32 [batch, seq], only
// with kvSeq == seq). Query i sits at position kvSeq - seq + i and sees key j <= its position within its segment.
//
// Work split (4 warps per block, 16 or 32 rows per warp, every sum in a fixed order, so results are deterministic):
//   forward: a block owns 64 queries of one head and walks the visible key tiles of 64; at D = 128 the _mt2 kernel
//            (where its 105 KB of shared memory fit) 128 queries with 32 rows (two m16 tiles) per warp, which halves
//            the shared-memory reads per product;
//   dK/dV:   a block owns 64 keys of one kv head and walks every query tile (32 rows; 64 on wgmma) of the group's heads,
//            or of a chunk of them where whole groups would leave the GPU short of blocks (fp32 partials, then summed);
//   dQ:      a block owns 64 queries of one head and walks the visible key tiles of 32 (64-row steps measured slower);
//            each warp holds its Q and dO rows as mma fragments in registers (only K and V are read from shared memory);
//            at D = 128 the _mt2 kernel (same condition) 128 queries with 32 rows per warp, Q and dO reloaded from shared
//            memory. The one-tile and two-tile kernels give the same bits.
// Shared tiles hold rows of D 16-bit values padded to D + 8, so fragment loads from 8 rows hit distinct banks.
// The host (dev.jsloth.cuda.FlashAttention) sizes the dynamic shared memory with the same layouts and only
// launches these kernels for 16-bit tensors with 16-byte aligned rows; the F32/F64 instantiations that the
// generic catalog compiles trap.
#include "common.cuh"

/** Sixteen bytes, for whole-row copies of 8 16-bit values. */
struct alignas(16) flash_chunk {
    unsigned x, y, z, w;
};

/** The mma instruction and operand packing of a 16-bit storage type; absent for the others. */
template <typename T> struct FlashMma {
    static constexpr bool supported = false;
};

template <> struct FlashMma<bf16_t> {
    static constexpr bool supported = true;
    /** Two floats rounded (to nearest even) into one register, lo in the low half. */
    static __device__ __forceinline__ unsigned pack(float lo, float hi) {
        unsigned r;
        asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
        return r;
    }
    static __device__ __forceinline__ void mma(float* c, const unsigned* a, unsigned b0, unsigned b1) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
};

template <> struct FlashMma<f16_t> {
    static constexpr bool supported = true;
    static __device__ __forceinline__ unsigned pack(float lo, float hi) {
        unsigned r;
        asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
        return r;
    }
    static __device__ __forceinline__ void mma(float* c, const unsigned* a, unsigned b0, unsigned b1) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
};

#define FLASH_LOG2E 1.4426950408889634f
#define FLASH_LN2 0.6931471805599453f

/**
 * 2^x on the special-function unit, results below 2^-126 flushed to zero (`ex2.approx.ftz`): exp2f is the same
 * instruction plus a range check and two predicated multiplies per call, to return subnormal results, which a
 * softmax weight below 1e-38 never needs (ncu, 8B forward: 14% of the kernel's instructions).
 */
__device__ __forceinline__ float flash_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

/**
 * Block (query tile, head, batch row) of the forward and dQ grids, (query heads, batch, query tiles): the last query
 * tiles, which see the most keys, of every head and row are handed out first, and the short ones fill the tail
 * (ncu, 8B forward with the tiles in x: SM active cycles 18.6% above the mean on the busiest SM).
 */
struct FlashQueryBlock {
    int h, b, q0;
};
__device__ __forceinline__ FlashQueryBlock flash_query_block(int rows) {
    return {(int) blockIdx.x, (int) blockIdx.y, (int) (gridDim.z - 1 - blockIdx.z) * rows};
}

/** The 32-bit shared-memory address of a pointer into shared memory (what ldmatrix and cp.async take). */
__device__ __forceinline__ unsigned flash_shared_address(const void* p) {
    unsigned a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}

/** Queues a 16-byte global-to-shared copy that bypasses registers; !valid writes 16 zero bytes instead. */
__device__ __forceinline__ void flash_copy16(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(flash_shared_address(dst)), "l"(src), "r"(valid ? 16 : 0));
}

/** The same for 4 bytes. */
__device__ __forceinline__ void flash_copy4(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(flash_shared_address(dst)), "l"(src), "r"(valid ? 4 : 0));
}

/** Closes the group of copies queued so far by this thread. */
__device__ __forceinline__ void flash_commit() {
    asm volatile("cp.async.commit_group;");
}

/** Waits until at most N of this thread's newest groups are still in flight. */
template <int N>
__device__ __forceinline__ void flash_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N));
}

/** Queues the copy of rows [row0, row0+count) of head h into a tile of `rows` rows of stride D + 8 (zeros past count). */
template <int D, typename T>
__device__ __forceinline__ void flash_fetch_rows(unsigned short* dst, const T* src, int b, int row0, int count, int rows,
                                                 int len, int heads, int h) {
    constexpr int C = D / 8;
    const flash_chunk* s = reinterpret_cast<const flash_chunk*>(src);
    for (int e = threadIdx.x; e < rows * C; e += blockDim.x) {
        const int r = e / C, c = e - r * C;
        const bool valid = r < count;
        flash_copy16(dst + r * (D + 8) + c * 8, valid ? s + (((i64) b * len + row0 + r) * heads + h) * C + c : s, valid);
    }
}

/** Queues the copy of `rows` 4-byte values from src[0..count) (zeros past count). */
template <typename V>
__device__ __forceinline__ void flash_fetch_vector(V* dst, const V* src, int count, int rows) {
    for (int r = threadIdx.x; r < rows; r += blockDim.x) flash_copy4(dst + r, r < count ? src + r : src, r < count);
}

/**
 * Four 8x8 matrices of 16-bit values from shared memory in one instruction: lane L gives the address of row L % 8 of
 * matrix L / 8 and receives, in register i, elements (L / 4, 2 (L % 4)) and (L / 4, 2 (L % 4) + 1) of matrix i, or
 * with `trans` elements (2 (L % 4), L / 4) and (2 (L % 4) + 1, L / 4): exactly the mma operand fragments.
 */
__device__ __forceinline__ void flash_ldmatrix(unsigned* r, const unsigned short* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(flash_shared_address(p)));
}

__device__ __forceinline__ void flash_ldmatrix_trans(unsigned* r, const unsigned short* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(flash_shared_address(p)));
}

/**
 * A shared tile of 16-bit values by its 32-bit shared-memory address, for the fragment loads below in place of a
 * pointer: offsets from it are integer adds that the compiler folds into ldmatrix's immediate, so an unrolled loop of
 * loads keeps one address register per tile where pointers take one per load (registers the two-m-tile forward needs).
 */
struct flash_shared_tile {
    unsigned address;
    __device__ __forceinline__ flash_shared_tile operator+(int elements) const { return {address + 2u * elements}; }
};

__device__ __forceinline__ void flash_ldmatrix(unsigned* r, flash_shared_tile p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(p.address));
}

__device__ __forceinline__ void flash_ldmatrix_trans(unsigned* r, flash_shared_tile p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(p.address));
}

/** The A fragment (16 rows from r0, columns k0..k0+15) of a row-major tile (a pointer or a flash_shared_tile). */
template <int D, typename Tile>
__device__ __forceinline__ void flash_a_fragment(unsigned* a, Tile tile, int r0, int k0) {
    const int lane = threadIdx.x & 31, m = lane >> 3, r = lane & 7;
    flash_ldmatrix(a, tile + (r0 + (m & 1) * 8 + r) * (D + 8) + k0 + (m >> 1) * 8);
}

/**
 * B fragments of two adjacent 8-column tiles (n0 and n0 + 8) at k0..k0+15 for a product against the rows of a tile
 * (B[k][n] = tile[n][k]): b[0], b[1] for n0 and b[2], b[3] for n0 + 8.
 */
template <int D, typename Tile>
__device__ __forceinline__ void flash_b_fragments_of_rows(unsigned* b, Tile tile, int n0, int k0) {
    const int lane = threadIdx.x & 31, m = lane >> 3, r = lane & 7;
    flash_ldmatrix(b, tile + (n0 + (m >> 1) * 8 + r) * (D + 8) + k0 + (m & 1) * 8);
}

/** The same for a product against a tile stored [k][n] (B[k][n] = tile[k][n]), through the transposing load. */
template <int D, typename Tile>
__device__ __forceinline__ void flash_b_fragments_of_columns(unsigned* b, Tile tile, int k0, int n0) {
    const int lane = threadIdx.x & 31, m = lane >> 3, r = lane & 7;
    flash_ldmatrix_trans(b, tile + (k0 + (m & 1) * 8 + r) * (D + 8) + n0 + (m >> 1) * 8);
}

/**
 * acc[16 x N] += A[16 x K] * tile^T where A is rows aRow0.. of aTile and tile holds N rows (from n0) of K = D
 * columns: a product against rows of a tile, e.g. Q K^T with K's rows as the columns of the result.
 */
template <typename T, int D, int N>
__device__ __forceinline__ void flash_times_rows(float (*acc)[4], const unsigned short* aTile, int aRow0,
                                                 const unsigned short* tile, int n0) {
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        unsigned a[4];
        flash_a_fragment<D>(a, aTile, aRow0, kk * 16);
#pragma unroll
        for (int nt = 0; nt < N / 8; nt += 2) {
            unsigned b[4];
            flash_b_fragments_of_rows<D>(b, tile, n0 + nt * 8, kk * 16);
            FlashMma<T>::mma(acc[nt], a, b[0], b[1]);
            FlashMma<T>::mma(acc[nt + 1], a, b[2], b[3]);
        }
    }
}

/** {@link flash_times_rows} with the A fragments (D / 16 of them, one per 16 columns) already in registers. */
template <typename T, int D, int N, typename Tile>
__device__ __forceinline__ void flash_times_rows_held(float (*acc)[4], const unsigned (*a)[4], Tile tile, int n0) {
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
#pragma unroll
        for (int nt = 0; nt < N / 8; nt += 2) {
            unsigned b[4];
            flash_b_fragments_of_rows<D>(b, tile, n0 + nt * 8, kk * 16);
            FlashMma<T>::mma(acc[nt], a[kk], b[0], b[1]);
            FlashMma<T>::mma(acc[nt + 1], a[kk], b[2], b[3]);
        }
}

/**
 * acc[16 x D] += P[16 x K] * tile[k0.., 0..D) where P is held as accumulator fragments (K/8 tiles of 16 x 8, the
 * layout mma produces) and rounded to the storage type here: the FlashAttention register reuse of P as an A operand.
 * The tile is a pointer or a flash_shared_tile.
 */
template <typename T, int D, int K, typename Tile>
__device__ __forceinline__ void flash_times_tile(float (*acc)[4], const float (*p)[4], Tile tile, int k0) {
#pragma unroll
    for (int kk = 0; kk < K / 16; kk++) {
        unsigned a[4];
        a[0] = FlashMma<T>::pack(p[2 * kk][0], p[2 * kk][1]);
        a[1] = FlashMma<T>::pack(p[2 * kk][2], p[2 * kk][3]);
        a[2] = FlashMma<T>::pack(p[2 * kk + 1][0], p[2 * kk + 1][1]);
        a[3] = FlashMma<T>::pack(p[2 * kk + 1][2], p[2 * kk + 1][3]);
#pragma unroll
        for (int nd = 0; nd < D / 8; nd += 2) {
            unsigned b[4];
            flash_b_fragments_of_columns<D>(b, tile, k0 + kk * 16, nd * 8);
            FlashMma<T>::mma(acc[nd], a, b[0], b[1]);
            FlashMma<T>::mma(acc[nd + 1], a, b[2], b[3]);
        }
    }
}

/** Writes a warp's 16 x D accumulator (times `scale`) as rows row0.. of head h; rows at or past `len` are skipped. */
template <int D, typename T>
__device__ __forceinline__ void flash_store_rows(T* dst, const float (*acc)[4], float scaleA, float scaleB, int b, int row0,
                                                 int len, int heads, int h) {
    const int lane = threadIdx.x & 31, gr = lane >> 2, tq = lane & 3;
    const int ra = row0 + gr, rb = ra + 8;
#pragma unroll
    for (int nd = 0; nd < D / 8; nd++) {
        const int c = nd * 8 + 2 * tq;
        if (ra < len) {
            const i64 base = (((i64) b * len + ra) * heads + h) * D + c;
            store(dst, base, acc[nd][0] * scaleA);
            store(dst, base + 1, acc[nd][1] * scaleA);
        }
        if (rb < len) {
            const i64 base = (((i64) b * len + rb) * heads + h) * D + c;
            store(dst, base, acc[nd][2] * scaleB);
            store(dst, base + 1, acc[nd][3] * scaleB);
        }
    }
}

/**
 * acc[mt] += P[mt] * tile[k0.., 0..D) for MT m16 tiles of rows at once, P already rounded to the storage type as A
 * fragments ({@link flash_times_tile} packs them as it goes): each B fragment is loaded from shared memory once and
 * feeds the mma instructions of every m-tile.
 */
template <typename T, int D, int K, int MT>
__device__ __forceinline__ void flash_times_tile_rows(float (*acc)[D / 8][4], const unsigned (*p)[K / 16][4],
                                                      flash_shared_tile tile, int k0) {
#pragma unroll
    for (int kk = 0; kk < K / 16; kk++)
#pragma unroll
        for (int nd = 0; nd < D / 8; nd += 2) {
            unsigned b[4];
            flash_b_fragments_of_columns<D>(b, tile, k0 + kk * 16, nd * 8);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                FlashMma<T>::mma(acc[mt][nd], p[mt][kk], b[0], b[1]);
                FlashMma<T>::mma(acc[mt][nd + 1], p[mt][kk], b[2], b[3]);
            }
        }
}

/**
 * Forward, each warp owning MT m16 tiles of consecutive query rows (16 MT rows, 64 MT per block). With MT = 2, the
 * shape of FlashAttention-2's hdim-128 forward, every K and V fragment loaded from shared memory feeds two mma
 * instructions instead of one and every key tile copied serves twice the queries. Registers decide where Q's A
 * fragments live: one m-tile holds them for the whole walk; with two, o and s alone take 2 (D / 8 + BK / 8) 4 floats
 * (192 at D = 128), so they are reloaded from the shared query tile for every key tile, as FlashAttention-2 does.
 * Even so, at D = 128 the two-tile kernel takes all 255 registers and ptxas keeps the 4 row sums l in local memory (a
 * load and a store each per key tile); a softmax over halves of the key tile fits without but measured 3% slower.
 * Shared memory: the query tile, two buffers of (K, V) tiles so that the next key tile is copied (cp.async) while
 * this one is multiplied, then segment ids of the queries and of both key buffers.
 */
template <typename T, int D, int MT>
__device__ void flash_forward(const T* q, const T* k, const T* v, const int* segments, float scale, T* out, float* lse,
                              int seq, int kvSeq, int qHeads, int kvHeads) {
    constexpr int WQ = 16 * MT, BQ = 4 * WQ, BK = 64, LD = D + 8; // rows per warp, per block; keys per tile
    constexpr bool holdQ = MT == 1;
    JSLOTH_DYNAMIC_SHARED(flash_chunk, flash_smem);
    unsigned short* Qs = reinterpret_cast<unsigned short*>(flash_smem);
    unsigned short* Kb = Qs + BQ * LD;      // two buffers of BK rows
    unsigned short* Vb = Kb + 2 * BK * LD;  // two buffers of BK rows
    int* segQ = reinterpret_cast<int*>(Vb + 2 * BK * LD);
    int* segKb = segQ + BQ;                 // two buffers of BK ids

    const auto [h, b, q0] = flash_query_block(BQ);
    const int g = h / (qHeads / kvHeads), offset = kvSeq - seq;
    const int nq = smaller(BQ, seq - q0);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gr = lane >> 2, tq = lane & 3;
    const int w0 = warp * WQ; // this warp's first row in the query tile; m-tile mt starts at w0 + 16 mt
    const float scaleLog2 = scale * FLASH_LOG2E;
    const int tiles = (offset + q0 + nq - 1) / BK + 1; // key tiles up to the last key any query here sees

    flash_fetch_rows<D>(Qs, q, b, q0, nq, BQ, seq, qHeads, h);
    if (segments != nullptr) flash_fetch_vector(segQ, segments + (i64) b * seq + q0, nq, BQ);
    flash_commit();
    flash_fetch_rows<D>(Kb, k, b, 0, smaller(BK, kvSeq), BK, kvSeq, kvHeads, g);
    flash_fetch_rows<D>(Vb, v, b, 0, smaller(BK, kvSeq), BK, kvSeq, kvHeads, g);
    if (segments != nullptr) flash_fetch_vector(segKb, segments + (i64) b * seq, smaller(BK, kvSeq), BK);
    flash_commit();
    flash_wait<1>(); // the query tile
    __syncthreads();
    // the three tiles from one address, so that the compiler sees their constant distances
    const flash_shared_tile QsT{flash_shared_address(Qs)}, KbT = QsT + BQ * LD, VbT = KbT + 2 * BK * LD;
    [[maybe_unused]] unsigned qf[holdQ ? D / 16 : 1][4]; // Q's A fragments, one per 16 columns, when held
    if constexpr (holdQ) {
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) flash_a_fragment<D>(qf[kk], QsT, w0, kk * 16);
    }
    const int row0 = q0 + w0 + gr; // this lane's rows: row0 + 16 mt and row0 + 16 mt + 8 in m-tile mt
    const int warpLastRow = smaller(q0 + w0 + WQ - 1, seq - 1);

    float o[MT][D / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nd = 0; nd < D / 8; nd++) o[mt][nd][0] = o[mt][nd][1] = o[mt][nd][2] = o[mt][nd][3] = 0.f;
    float m[MT][2], l[MT][2]; // per m-tile, for this lane's two rows
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        m[mt][0] = m[mt][1] = neg_inf<float>();
        l[mt][0] = l[mt][1] = 0.f;
    }

    for (int it = 0; it < tiles; it++) {
        const int k0 = it * BK, buf = it & 1;
        if (it + 1 < tiles) { // queue the next tile into the other buffer (free since the barrier ending the last step)
            const int n0 = k0 + BK, nn = smaller(BK, kvSeq - n0);
            flash_fetch_rows<D>(Kb + (buf ^ 1) * BK * LD, k, b, n0, nn, BK, kvSeq, kvHeads, g);
            flash_fetch_rows<D>(Vb + (buf ^ 1) * BK * LD, v, b, n0, nn, BK, kvSeq, kvHeads, g);
            if (segments != nullptr) flash_fetch_vector(segKb + (buf ^ 1) * BK, segments + (i64) b * seq + n0, nn, BK);
        }
        flash_commit();
        flash_wait<1>(); // this tile's copies are done (the next tile's may still run)
        __syncthreads();
        const flash_shared_tile Ks = KbT + buf * BK * LD, Vs = VbT + buf * BK * LD;
        const int* segK = segKb + buf * BK;
        if (k0 <= offset + warpLastRow) { // some key of this tile is visible to this warp's rows
            float s[MT][BK / 8][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < BK / 8; nt++) s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                unsigned qa[MT][4]; // Q's A fragments of columns kk * 16.., one per m-tile
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    if constexpr (holdQ) {
#pragma unroll
                        for (int i = 0; i < 4; i++) qa[mt][i] = qf[kk][i];
                    } else {
                        flash_a_fragment<D>(qa[mt], QsT, w0 + mt * 16, kk * 16);
                    }
                }
#pragma unroll
                for (int nt = 0; nt < BK / 8; nt += 2) { // each K fragment pair once, for every m-tile
                    unsigned kb[4];
                    flash_b_fragments_of_rows<D>(kb, Ks, nt * 8, kk * 16);
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        FlashMma<T>::mma(s[mt][nt], qa[mt], kb[0], kb[1]);
                        FlashMma<T>::mma(s[mt][nt + 1], qa[mt], kb[2], kb[3]);
                    }
                }
            }
            float mx[MT][2];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
#pragma unroll
                for (int nt = 0; nt < BK / 8; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) s[mt][nt][e] *= scaleLog2;
                // a tile every key of which this m-tile's rows all see needs no mask
                const int first = q0 + w0 + mt * 16;
                if (segments != nullptr || k0 + BK > kvSeq || k0 + BK - 1 > offset + first || first + 15 >= seq) {
                    // a row in range sees the keys up to its position offset + row (< kvSeq): the last one for rows
                    // A and B, counted from this lane's first column k0 + 2 tq; -1 (none) for a row past the end
                    const int rowA = row0 + mt * 16, rowB = rowA + 8;
                    const int lastA = rowA < seq ? offset + rowA - k0 - 2 * tq : -1;
                    const int lastB = rowB < seq ? offset + rowB - k0 - 2 * tq : -1;
#pragma unroll
                    for (int nt = 0; nt < BK / 8; nt++)
#pragma unroll
                        for (int e = 0; e < 4; e++)
                            if (nt * 8 + (e & 1) > (e < 2 ? lastA : lastB)) s[mt][nt][e] = neg_inf<float>();
                    if (segments != nullptr) { // and only those of its own sequence of the pack
                        const int segA = segQ[w0 + mt * 16 + gr], segB = segQ[w0 + mt * 16 + gr + 8];
#pragma unroll
                        for (int nt = 0; nt < BK / 8; nt++)
#pragma unroll
                            for (int e = 0; e < 4; e++)
                                if (segK[nt * 8 + 2 * tq + (e & 1)] != (e < 2 ? segA : segB)) s[mt][nt][e] = neg_inf<float>();
                    }
                }
                mx[mt][0] = mx[mt][1] = neg_inf<float>();
#pragma unroll
                for (int nt = 0; nt < BK / 8; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) mx[mt][e >> 1] = fmaxf(mx[mt][e >> 1], s[mt][nt][e]);
            }
            float base[MT][2];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int r = 0; r < 2; r++) { // a row's 4 lanes (tq = 0..3) agree on its maximum
                    mx[mt][r] = fmaxf(mx[mt][r], __shfl_xor_sync(0xffffffffu, mx[mt][r], 1));
                    mx[mt][r] = fmaxf(mx[mt][r], __shfl_xor_sync(0xffffffffu, mx[mt][r], 2));
                    const float mNew = fmaxf(m[mt][r], mx[mt][r]);
                    base[mt][r] = mNew == neg_inf<float>() ? 0.f : mNew;
                    const float alpha = flash_exp2(m[mt][r] - base[mt][r]);
                    m[mt][r] = mNew;
                    l[mt][r] *= alpha;
#pragma unroll
                    for (int nd = 0; nd < D / 8; nd++) {
                        o[mt][nd][2 * r] *= alpha;
                        o[mt][nd][2 * r + 1] *= alpha;
                    }
                }
            unsigned pa[MT][BK / 16][4]; // P as mma A fragments, rounded to the storage type: half the registers of s
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < BK / 8; nt++) {
                    float p[4];
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        p[e] = flash_exp2(s[mt][nt][e] - base[mt][e >> 1]);
                        l[mt][e >> 1] += p[e];
                    }
                    pa[mt][nt >> 1][2 * (nt & 1)] = FlashMma<T>::pack(p[0], p[1]);
                    pa[mt][nt >> 1][2 * (nt & 1) + 1] = FlashMma<T>::pack(p[2], p[3]);
                }
            flash_times_tile_rows<T, D, BK, MT>(o, pa, Vs, 0);
        }
        __syncthreads(); // every warp is done with this buffer before the next step refills it
    }
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int r = 0; r < 2; r++) { // each lane summed its own columns: add up a row's 4 lanes
            l[mt][r] += __shfl_xor_sync(0xffffffffu, l[mt][r], 1);
            l[mt][r] += __shfl_xor_sync(0xffffffffu, l[mt][r], 2);
        }
        flash_store_rows<D>(out, o[mt], l[mt][0] > 0.f ? 1.f / l[mt][0] : 0.f, l[mt][1] > 0.f ? 1.f / l[mt][1] : 0.f, b,
                            q0 + w0 + mt * 16, seq, qHeads, h);
        if (tq == 0) {
            const int ra = row0 + mt * 16, rb = ra + 8;
            float* lseRows = lse + ((i64) b * qHeads + h) * seq;
            if (ra < seq) lseRows[ra] = l[mt][0] > 0.f ? (m[mt][0] + log2f(l[mt][0])) * FLASH_LN2 : neg_inf<float>();
            if (rb < seq) lseRows[rb] = l[mt][1] > 0.f ? (m[mt][1] + log2f(l[mt][1])) * FLASH_LN2 : neg_inf<float>();
        }
    }
}

/**
 * P^T and dS^T of one warp's 16 keys against N queries, from S^T = K Q^T and dP^T = V dO^T (accumulator layout:
 * rows keys, columns queries): P^T = exp(scale s - lse), dS^T = P^T (dP^T - delta), 0 where the key is not visible.
 * The key of row A (keyA; row B's is keyA + 8) is visible to query q0 + col iff keyA <= q0 + col < seq (a key at or
 * past seq thus sees none) and, with segments, both lie in one sequence of the pack. As in the forward, the masks
 * cost nothing where they cannot apply: `diagonal` (some key of the warp lies past the tile's first query) and
 * `tail` (the tile runs past the last query) each take one compare per element against a per-row bound, counted in
 * this lane's local columns c = nt 8 + (e & 1) (query q0 + 2 tq + c); the segment test runs only with segments.
 */
template <int N>
__device__ __forceinline__ void flash_probabilities_t(float (*s)[4], float (*dp)[4], const float* lseRow, const float* deltaRow,
                                                      const int* segQ, const int* segK, bool segmented, int keyA,
                                                      int keyLocalA, int q0, int seq, float scaleLog2, bool diagonal,
                                                      bool tail) {
    const int lane = threadIdx.x & 31, tq = lane & 3;
    // s scaleLog2 - lse LOG2E as one fma after the rounded product lse LOG2E, spelled out so that the rounding does not
    // hang on the compiler's choice of contraction (rows A and B share the product)
#pragma unroll
    for (int nt = 0; nt < N / 8; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            s[nt][e] = flash_exp2(__fmaf_rn(s[nt][e], scaleLog2, -(lseRow[nt * 8 + 2 * tq + (e & 1)] * FLASH_LOG2E)));
    if (diagonal) { // row A sees the local columns from firstA on, row B from firstA + 8
        const int firstA = keyA - q0 - 2 * tq, firstB = firstA + 8;
#pragma unroll
        for (int nt = 0; nt < N / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                if (nt * 8 + (e & 1) < (e < 2 ? firstA : firstB)) s[nt][e] = 0.f;
    }
    if (tail) { // no key sees a query at or past seq: the local columns from end on
        const int end = seq - q0 - 2 * tq;
#pragma unroll
        for (int nt = 0; nt < N / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                if (nt * 8 + (e & 1) >= end) s[nt][e] = 0.f;
    }
    if (segmented) {
        const int segA = segK[keyLocalA], segB = segK[keyLocalA + 8];
#pragma unroll
        for (int nt = 0; nt < N / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                if (segQ[nt * 8 + 2 * tq + (e & 1)] != (e < 2 ? segA : segB)) s[nt][e] = 0.f;
    }
#pragma unroll
    for (int nt = 0; nt < N / 8; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) dp[nt][e] = s[nt][e] * (dp[nt][e] - deltaRow[nt * 8 + 2 * tq + (e & 1)]);
}

/**
 * A dK/dV block's sums: to dk and dv (the storage type) when its chunk is the whole group, else to the fp32 partials
 * of head blockIdx.x of kvHeads * chunks.
 */
template <int D, typename T>
__device__ __forceinline__ void flash_store_dkdv(T* dk, T* dv, float* dkPart, float* dvPart, const float (*dka)[4],
                                                 const float (*dva)[4], float scale, int b, int row0, int seq, int kvHeads,
                                                 int chunks) {
    if (chunks == 1) {
        flash_store_rows<D>(dk, dka, scale, scale, b, row0, seq, kvHeads, (int) blockIdx.x);
        flash_store_rows<D>(dv, dva, 1.f, 1.f, b, row0, seq, kvHeads, (int) blockIdx.x);
    } else {
        flash_store_rows<D>(dkPart, dka, scale, scale, b, row0, seq, kvHeads * chunks, (int) blockIdx.x);
        flash_store_rows<D>(dvPart, dva, 1.f, 1.f, b, row0, seq, kvHeads * chunks, (int) blockIdx.x);
    }
}

/**
 * dK and dV of one key tile of one kv head, walking the query tiles from the key tile on for each of `group / chunks`
 * query heads of its group in turn (the chunk blockIdx.x % chunks of them): the sums run on in the same accumulators.
 * With chunks == 1 the block has the whole group and writes dK and dV once, in the storage type (per query head, with
 * fp32 partials summed over the group by another kernel, the wgmma kernel took 0.386 + 0.047 ms at an 8B layer on the
 * H200 against 0.312 this way); where that leaves too few blocks to fill the GPU (the host splits a group in chunks
 * then, by shape alone), each chunk writes fp32 partials [batch, seq, kvHeads * chunks, D] that
 * flash_attention_chunk_sum_kernel adds up in chunk order. Grid: (kv head x chunk, batch, key tile), the first key
 * tiles (the most queries) first. Shared memory: the K and V tiles, two buffers of (Q, dO) tiles, two of the rows' lse
 * and delta, two of their segment ids, and the keys' segment ids: the next query tile is copied while this one is
 * multiplied.
 */
template <typename T, int D>
__device__ void flash_backward_dkdv(const T* dOut, const T* q, const T* k, const T* v, const int* segments, float scale,
                                    const float* lse, const float* delta, T* dk, T* dv, float* dkPart, float* dvPart, int seq,
                                    int qHeads, int kvHeads, int chunks) {
    constexpr int BK = 64, BQ = 32, LD = D + 8;
    JSLOTH_DYNAMIC_SHARED(flash_chunk, flash_smem);
    unsigned short* Ks = reinterpret_cast<unsigned short*>(flash_smem);
    unsigned short* Vs = Ks + BK * LD;
    unsigned short* Qb = Vs + BK * LD;      // two buffers of BQ rows
    unsigned short* dOb = Qb + 2 * BQ * LD; // two buffers of BQ rows
    float* lseb = reinterpret_cast<float*>(dOb + 2 * BQ * LD);
    float* deltab = lseb + 2 * BQ;
    int* segQb = reinterpret_cast<int*>(deltab + 2 * BQ);
    int* segK = segQb + 2 * BQ;

    const int g = blockIdx.x / chunks, b = blockIdx.y, k0 = blockIdx.z * BK, heads = qHeads / kvHeads / chunks;
    const int h0 = g * chunks * heads + (blockIdx.x % chunks) * heads, nk = smaller(BK, seq - k0);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gr = lane >> 2;
    const float scaleLog2 = scale * FLASH_LOG2E;
    const int steps = (seq - k0 + BQ - 1) / BQ, total = heads * steps; // query tiles from k0 on, for each head

    flash_fetch_rows<D>(Ks, k, b, k0, nk, BK, seq, kvHeads, g);
    flash_fetch_rows<D>(Vs, v, b, k0, nk, BK, seq, kvHeads, g);
    if (segments != nullptr) flash_fetch_vector(segK, segments + (i64) b * seq + k0, nk, BK);
    auto fetch = [&](int it, int buf) {
        const int h = h0 + it / steps, q0 = k0 + (it % steps) * BQ, nq = smaller(BQ, seq - q0);
        flash_fetch_rows<D>(Qb + buf * BQ * LD, q, b, q0, nq, BQ, seq, qHeads, h);
        flash_fetch_rows<D>(dOb + buf * BQ * LD, dOut, b, q0, nq, BQ, seq, qHeads, h);
        const i64 r = ((i64) b * qHeads + h) * seq + q0;
        flash_fetch_vector(lseb + buf * BQ, lse + r, nq, BQ);
        flash_fetch_vector(deltab + buf * BQ, delta + r, nq, BQ);
        if (segments != nullptr) flash_fetch_vector(segQb + buf * BQ, segments + (i64) b * seq + q0, nq, BQ);
    };
    fetch(0, 0);
    flash_commit();

    float dka[D / 8][4], dva[D / 8][4];
#pragma unroll
    for (int nd = 0; nd < D / 8; nd++)
#pragma unroll
        for (int e = 0; e < 4; e++) dka[nd][e] = dva[nd][e] = 0.f;
    const int warpFirstKey = k0 + warp * 16, keyA = warpFirstKey + gr;

    for (int it = 0; it < total; it++) {
        const int buf = it & 1, q0 = k0 + (it % steps) * BQ, nq = smaller(BQ, seq - q0);
        if (it + 1 < total) fetch(it + 1, buf ^ 1);
        flash_commit();
        flash_wait<1>();
        __syncthreads();
        if (warpFirstKey <= q0 + nq - 1 && warpFirstKey < seq) { // some query here sees a key of this warp
            const unsigned short* Qs = Qb + buf * BQ * LD;
            const unsigned short* dOs = dOb + buf * BQ * LD;
            float s[BQ / 8][4], dp[BQ / 8][4];
#pragma unroll
            for (int nt = 0; nt < BQ / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[nt][e] = dp[nt][e] = 0.f;
            flash_times_rows<T, D, BQ>(s, Ks, warp * 16, Qs, 0);
            flash_times_rows<T, D, BQ>(dp, Vs, warp * 16, dOs, 0);
            flash_probabilities_t<BQ>(s, dp, lseb + buf * BQ, deltab + buf * BQ, segQb + buf * BQ, segK, segments != nullptr,
                                      keyA, warp * 16 + gr, q0, seq, scaleLog2, q0 < warpFirstKey + 15, q0 + BQ > seq);
            flash_times_tile<T, D, BQ>(dva, s, dOs, 0);
            flash_times_tile<T, D, BQ>(dka, dp, Qs, 0);
        }
        __syncthreads();
    }
    flash_store_dkdv<D>(dk, dv, dkPart, dvPart, dka, dva, scale, b, warpFirstKey, seq, kvHeads, chunks);
}

/**
 * acc[mt] += A[mt] * tile^T for MT m16 tiles of rows at once, A[mt] being rows aRow0 + 16 mt.. of aTile: {@link
 * flash_times_rows} for several m-tiles, with the A fragments loaded from shared memory for every 16 columns and each
 * B fragment pair loaded once and fed to every m-tile. Each element sums its products in the same order as there.
 */
template <typename T, int D, int N, int MT>
__device__ __forceinline__ void flash_times_rows_mt(float (*acc)[N / 8][4], flash_shared_tile aTile, int aRow0,
                                                    flash_shared_tile tile, int n0) {
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        unsigned a[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) flash_a_fragment<D>(a[mt], aTile, aRow0 + mt * 16, kk * 16);
#pragma unroll
        for (int nt = 0; nt < N / 8; nt += 2) {
            unsigned b[4];
            flash_b_fragments_of_rows<D>(b, tile, n0 + nt * 8, kk * 16);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                FlashMma<T>::mma(acc[mt][nt], a[mt], b[0], b[1]);
                FlashMma<T>::mma(acc[mt][nt + 1], a[mt], b[2], b[3]);
            }
        }
    }
}

/**
 * dQ of one query tile, each warp owning MT m16 tiles of consecutive query rows (16 MT rows, 64 MT per block), as in
 * the forward. With one, the warp holds its Q and dO rows as mma A fragments in registers for the whole walk (only K
 * and V are read from shared memory). With two (D = 128), dq alone takes 2 (D / 8) 4 = 128 floats and s, dp another
 * 64, so the Q and dO fragments are reloaded from the shared tiles for every key tile, and every K fragment (S = Q K^T,
 * dS K) and V fragment (dP = dO V^T) loaded from shared memory feeds the mma instructions of both m-tiles. Each row
 * sits in the same lane and register of its m-tile, meets the same key tiles and sums its products in the same order
 * either way: the results are the same bits. (Key tiles are 32 rows and a warp's rows start at a multiple of 32, so
 * every row of the warp in range sees keys of each tile the warp walks: no m-tile multiplies a tile its rows would
 * skip alone.) Shared memory: the Q and dO tiles, two buffers of (K, V) tiles, the queries' segment ids and two
 * buffers of the keys'.
 */
template <typename T, int D, int MT>
__device__ void flash_backward_dq(const T* dOut, const T* q, const T* k, const T* v, const int* segments, float scale,
                                  const float* lse, const float* delta, T* dq, int seq, int qHeads, int kvHeads) {
    constexpr int WQ = 16 * MT, BQ = 4 * WQ, BK = 32, LD = D + 8; // rows per warp, per block; keys per tile
    constexpr bool holdQ = MT == 1;
    JSLOTH_DYNAMIC_SHARED(flash_chunk, flash_smem);
    unsigned short* Qs = reinterpret_cast<unsigned short*>(flash_smem);
    unsigned short* dOs = Qs + BQ * LD;
    unsigned short* Kb = dOs + BQ * LD;     // two buffers of BK rows
    unsigned short* Vb = Kb + 2 * BK * LD;  // two buffers of BK rows
    int* segQ = reinterpret_cast<int*>(Vb + 2 * BK * LD);
    int* segKb = segQ + BQ;                 // two buffers of BK ids

    const auto [h, b, q0] = flash_query_block(BQ);
    const int g = h / (qHeads / kvHeads);
    const int nq = smaller(BQ, seq - q0);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gr = lane >> 2, tq = lane & 3;
    const int w0 = warp * WQ; // this warp's first row in the query tile; m-tile mt starts at w0 + 16 mt
    const float scaleLog2 = scale * FLASH_LOG2E;
    const int tiles = (q0 + nq - 1) / BK + 1;

    flash_fetch_rows<D>(Qs, q, b, q0, nq, BQ, seq, qHeads, h);
    flash_fetch_rows<D>(dOs, dOut, b, q0, nq, BQ, seq, qHeads, h);
    if (segments != nullptr) flash_fetch_vector(segQ, segments + (i64) b * seq + q0, nq, BQ);
    flash_fetch_rows<D>(Kb, k, b, 0, smaller(BK, seq), BK, seq, kvHeads, g);
    flash_fetch_rows<D>(Vb, v, b, 0, smaller(BK, seq), BK, seq, kvHeads, g);
    if (segments != nullptr) flash_fetch_vector(segKb, segments + (i64) b * seq, smaller(BK, seq), BK);
    flash_commit();
    // per m-tile, this lane's rows A = q0 + w0 + 16 mt + gr and B = A + 8: their lse (times LOG2E) and delta; the key
    // tiles at k0 >= maskFrom need a mask: those with keys past the m-tile's first row, and every one when some row of
    // the m-tile lies past the end. A row in range sees the keys up to itself: in the tile at k0, counted from this
    // lane's first column 2 tq, the last is last[0] - k0 for row A and last[1] - k0 for row B; for a row past the end,
    // none (-1)
    float lseRow[MT][2], deltaRow[MT][2];
    int maskFrom[MT], last[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        const int first = q0 + w0 + mt * 16, rowA = first + gr, rowB = rowA + 8;
        const i64 statA = ((i64) b * qHeads + h) * seq + rowA, statB = statA + 8;
        lseRow[mt][0] = rowA < seq ? lse[statA] * FLASH_LOG2E : 0.f;
        lseRow[mt][1] = rowB < seq ? lse[statB] * FLASH_LOG2E : 0.f;
        deltaRow[mt][0] = rowA < seq ? delta[statA] : 0.f;
        deltaRow[mt][1] = rowB < seq ? delta[statB] : 0.f;
        maskFrom[mt] = first + 15 < seq ? first - BK + 2 : 0;
        last[mt][0] = rowA < seq ? rowA - 2 * tq : -1;
        last[mt][1] = rowB < seq ? rowB - 2 * tq : -1;
    }
    const int warpLastRow = smaller(q0 + w0 + WQ - 1, seq - 1);
    // the four tiles from one shared address (see flash_shared_tile)
    const flash_shared_tile QsT{flash_shared_address(Qs)}, dOsT = QsT + BQ * LD, KbT = dOsT + BQ * LD, VbT = KbT + 2 * BK * LD;

    float dqa[MT][D / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nd = 0; nd < D / 8; nd++) dqa[mt][nd][0] = dqa[mt][nd][1] = dqa[mt][nd][2] = dqa[mt][nd][3] = 0.f;
    // with one m-tile, this warp's rows of Q and dO as mma A fragments, held for every key tile
    [[maybe_unused]] unsigned qf[holdQ ? D / 16 : 1][4], dof[holdQ ? D / 16 : 1][4];
    [[maybe_unused]] bool held = false;

    for (int it = 0; it < tiles; it++) {
        const int k0 = it * BK, buf = it & 1;
        if (it + 1 < tiles) {
            const int n0 = k0 + BK, nn = smaller(BK, seq - n0);
            flash_fetch_rows<D>(Kb + (buf ^ 1) * BK * LD, k, b, n0, nn, BK, seq, kvHeads, g);
            flash_fetch_rows<D>(Vb + (buf ^ 1) * BK * LD, v, b, n0, nn, BK, seq, kvHeads, g);
            if (segments != nullptr) flash_fetch_vector(segKb + (buf ^ 1) * BK, segments + (i64) b * seq + n0, nn, BK);
        }
        flash_commit();
        flash_wait<1>();
        __syncthreads();
        if (k0 <= warpLastRow) { // some row of the warp lies at or past this tile's first key (then so does every one in range)
            const flash_shared_tile Ks = KbT + buf * BK * LD, Vs = VbT + buf * BK * LD;
            float s[MT][BK / 8][4], dp[MT][BK / 8][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < BK / 8; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) s[mt][nt][e] = dp[mt][nt][e] = 0.f;
            if constexpr (holdQ) {
                if (!held) { // the block's Q and dO fragments, loaded once (the tiles arrived with the first key tile)
#pragma unroll
                    for (int kk = 0; kk < D / 16; kk++) {
                        flash_a_fragment<D>(qf[kk], QsT, w0, kk * 16);
                        flash_a_fragment<D>(dof[kk], dOsT, w0, kk * 16);
                    }
                    held = true;
                }
                flash_times_rows_held<T, D, BK>(s[0], qf, Ks, 0);
                flash_times_rows_held<T, D, BK>(dp[0], dof, Vs, 0);
            } else {
                flash_times_rows_mt<T, D, BK, MT>(s, QsT, w0, Ks, 0);
                flash_times_rows_mt<T, D, BK, MT>(dp, dOsT, w0, Vs, 0);
            }
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
#pragma unroll
                for (int nt = 0; nt < BK / 8; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) // P, with the one rounding of dK/dV's (flash_probabilities_t)
                        s[mt][nt][e] = flash_exp2(__fmaf_rn(s[mt][nt][e], scaleLog2, -lseRow[mt][e >> 1]));
                if (k0 >= maskFrom[mt]) { // local column c = nt 8 + (e & 1) is key k0 + 2 tq + c
                    const int lastTileA = last[mt][0] - k0, lastTileB = last[mt][1] - k0;
#pragma unroll
                    for (int nt = 0; nt < BK / 8; nt++)
#pragma unroll
                        for (int e = 0; e < 4; e++)
                            if (nt * 8 + (e & 1) > (e < 2 ? lastTileA : lastTileB)) s[mt][nt][e] = 0.f;
                }
                if (segments != nullptr) { // and only those of its own sequence of the pack
                    const int* segK = segKb + buf * BK;
                    const int segA = segQ[w0 + mt * 16 + gr], segB = segQ[w0 + mt * 16 + gr + 8];
#pragma unroll
                    for (int nt = 0; nt < BK / 8; nt++)
#pragma unroll
                        for (int e = 0; e < 4; e++)
                            if (segK[nt * 8 + 2 * tq + (e & 1)] != (e < 2 ? segA : segB)) s[mt][nt][e] = 0.f;
                }
            }
            if constexpr (MT == 1) {
#pragma unroll
                for (int nt = 0; nt < BK / 8; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) dp[0][nt][e] = s[0][nt][e] * (dp[0][nt][e] - deltaRow[0][e >> 1]); // dS
                flash_times_tile<T, D, BK>(dqa[0], dp[0], Ks, 0);
            } else {
                unsigned ds[MT][BK / 16][4]; // dS as mma A fragments, rounded to the storage type as flash_times_tile does
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
#pragma unroll
                    for (int nt = 0; nt < BK / 8; nt++) {
                        float d[4];
#pragma unroll
                        for (int e = 0; e < 4; e++) d[e] = s[mt][nt][e] * (dp[mt][nt][e] - deltaRow[mt][e >> 1]);
                        ds[mt][nt >> 1][2 * (nt & 1)] = FlashMma<T>::pack(d[0], d[1]);
                        ds[mt][nt >> 1][2 * (nt & 1) + 1] = FlashMma<T>::pack(d[2], d[3]);
                    }
                flash_times_tile_rows<T, D, BK, MT>(dqa, ds, Ks, 0);
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int mt = 0; mt < MT; mt++) flash_store_rows<D>(dq, dqa[mt], scale, scale, b, q0 + w0 + mt * 16, seq, qHeads, h);
}

// ------------------------------------------------------------------ Hopper (sm_90a): warpgroup mma
// The kernels for compute capability 9.0 (D = 64 and 128) run the same algorithm as the mma.sync kernels above, warp for warp
// (each warp still holds 16 rows in the mma accumulator layout, so the softmax, masks and stores are shared), but
// issue the products as wgmma: one instruction per warpgroup (4 warps, 64 rows) and 16 columns of the reduction,
// with the shared-memory operands read by the tensor cores straight from swizzled tiles (no ldmatrix), and P or dS
// from registers. Each output element sums the same products in the same order as the mma.sync kernels (the wider
// query and key steps only regroup the same 16-column slices): the outputs, log-sum-exps and gradients are the same
// bits (CudaBackendTest compares them on awkward shapes).
// Shared tiles: 64 columns (128 bytes) per row in panels (a D = 128 tile is two panels of `rows` rows), rows grouped
// by 8 into 1024-byte atoms, 16-byte chunk j of row r at position j ^ (r % 8) (the 128-byte swizzle); tiles start on
// 1024-byte boundaries. The same tile serves as a K-major operand (rows = M or N, e.g. K in Q K^T) and as an MN-major
// one (rows = the reduction, e.g. V in P V).

/** The wgmma instructions of a 16-bit storage type; absent for the others. */
template <typename T> struct FlashWgmma {
    static constexpr bool supported = false;
};

// ss: A and B K-major from shared memory; rs: A from registers (the mma A-fragment layout), B MN-major from shared
// memory. Accumulators in the mma accumulator layout: d[4 j + e] is s[j][e] of the warp's 16 rows.
#define FLASH_WGMMA_OPS(T, TY)                                                                                             \
    template <> struct FlashWgmma<T> {                                                                                     \
        static constexpr bool supported = true;                                                                            \
        static __device__ __forceinline__ void ss_m64n64(float* d, unsigned long long a, unsigned long long b) { \
            asm volatile("{ .reg .pred p; setp.ne.b32 p, %34, 0; wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY \
                         " {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, %32, %33, p, 1, 1, 0, 0; }" \
                         : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]) \
                         : "l"(a), "l"(b), "r"(1)); \
        } \
        static __device__ __forceinline__ void rs_m64n64(float* d, const unsigned* a, unsigned long long b) { \
            asm volatile("{ .reg .pred p; setp.ne.b32 p, %37, 0; wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY \
                         " {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, {%32,%33,%34,%35}, %36, p, 1, 1, 1; }" \
                         : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]) \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1)); \
        } \
        static __device__ __forceinline__ void rs_m64n128(float* d, const unsigned* a, unsigned long long b) { \
            asm volatile("{ .reg .pred p; setp.ne.b32 p, %69, 0; wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY \
                         " {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, {%64,%65,%66,%67}, %68, p, 1, 1, 1; }" \
                         : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]) \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1)); \
        } \
    };
FLASH_WGMMA_OPS(bf16_t, "bf16")
FLASH_WGMMA_OPS(f16_t, "f16")
#undef FLASH_WGMMA_OPS

/** d[64 x N] += a[64 x 16] (registers) * B[16 x N] (shared, MN-major), N = the head dimension. */
template <typename T, int N>
__device__ __forceinline__ void flash_wg_rs(float* d, const unsigned* a, unsigned long long b) {
    if constexpr (N == 128) FlashWgmma<T>::rs_m64n128(d, a, b);
    else FlashWgmma<T>::rs_m64n64(d, a, b);
}

__device__ __forceinline__ void flash_wg_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }

/**
 * Pins N accumulator registers here (CUTLASS's warpgroup_fence_operand): called on freshly zeroed accumulators before
 * flash_wg_fence, it keeps the compiler from sinking the zeroing past the fence, between wgmma of one group, where
 * ptxas then injects warpgroup.arrive / wait (C7519, C7517) and serializes the products.
 */
template <int N>
__device__ __forceinline__ void flash_wg_fence_operand(float* acc) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(acc[i])::"memory");
}
__device__ __forceinline__ void flash_wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void flash_wg_wait() { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }
/** Makes this thread's completed shared-memory writes (cp.async ones too) visible to the tensor cores' reads. */
__device__ __forceinline__ void flash_wg_proxy_fence() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

/** The matrix descriptor of a swizzled tile at a shared address; lbo: bytes between panels (MN-major operands). */
__device__ __forceinline__ unsigned long long flash_wg_desc(unsigned address, unsigned lbo) {
    return (unsigned long long) ((address & 0x3FFFF) >> 4) | ((unsigned long long) (lbo >> 4) << 16)
           | ((unsigned long long) (1024 >> 4) << 32) | (1ull << 62);
}

/**
 * The descriptor of the tile `bytes` (a multiple of 16) past the one `d` describes: only the start-address field, the
 * low 14 bits, moves, and a shared address never carries out of it (shared memory ends below 256 KB), so one 32-bit add
 * on the low word instead of the masks and shifts of flash_wg_desc in front of every wgmma.
 */
__device__ __forceinline__ unsigned long long flash_wg_desc_plus(unsigned long long d, unsigned bytes) {
    return (d & 0xFFFFFFFF00000000ull) | (unsigned) ((unsigned) d + (bytes >> 4));
}

/** The first 1024-byte boundary in the dynamic shared memory (the kernels ask for 1 KB more than their tiles). */
__device__ __forceinline__ unsigned flash_wg_base(const void* smem) { return (flash_shared_address(smem) + 1023) & ~1023u; }

/** A generic pointer to shared memory at `address` (from flash_wg_base), for the per-row vectors after the tiles. */
template <typename V> __device__ __forceinline__ V* flash_wg_pointer(void* smem, unsigned address) {
    return reinterpret_cast<V*>(reinterpret_cast<char*>(smem) + (address - flash_shared_address(smem)));
}

/**
 * Queues rows [row0, row0+count) of head h into a swizzled tile of ROWS rows (zeros past count), by the block's THREADS
 * threads: each thread copies one 16-byte column chunk of every (THREADS / (D / 8))-th row, a multiple of 8 rows apart,
 * so its swizzled position within the row stays the same and its addresses advance by constants.
 */
template <int D, int ROWS, int THREADS, typename T>
__device__ __forceinline__ void flash_wg_fetch_rows(unsigned tile, const T* src, int b, int row0, int count, int len,
                                                    int heads, int h) {
    constexpr int C = D / 8, PASS = THREADS / C; // chunks per row; rows per pass of the block
    static_assert(PASS % 8 == 0 && ROWS % PASS == 0, "rows per pass must keep the swizzle phase");
    const int c = threadIdx.x % C, r0 = threadIdx.x / C, j = c & 7;
    const unsigned dst = tile + (c >> 3) * ROWS * 128 + r0 * 128 + ((j ^ (r0 & 7)) << 4);
    const flash_chunk* first = reinterpret_cast<const flash_chunk*>(src) + (((i64) b * len + row0 + r0) * heads + h) * C + c;
    const i64 stride = (i64) PASS * heads * C;
#pragma unroll
    for (int k = 0; k < ROWS / PASS; k++) {
        const bool valid = r0 + k * PASS < count;
        const void* from = valid ? static_cast<const void*>(first + k * stride) : static_cast<const void*>(src);
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst + k * PASS * 128), "l"(from), "r"(valid ? 16 : 0));
    }
}

/** The descriptor offset of reduction columns kk * 16.. in a K-major swizzled tile of `rows` rows. */
__device__ __forceinline__ unsigned flash_wg_k_offset(int kk, int rows) { return (kk >> 2) * rows * 128 + (kk & 3) * 32; }

/**
 * acc[64 x 64] += A B^T over D columns, A and B K-major swizzled tiles (their first rows at a and b, in tiles of aRows
 * and bRows rows): D / 16 wgmma, issued and not waited for.
 */
template <typename T, int D>
__device__ __forceinline__ void flash_wg_times_rows(float* acc, unsigned a, int aRows, unsigned b, int bRows) {
    const unsigned long long da = flash_wg_desc(a, 16), db = flash_wg_desc(b, 16);
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
        FlashWgmma<T>::ss_m64n64(acc, flash_wg_desc_plus(da, flash_wg_k_offset(kk, aRows)), flash_wg_desc_plus(db, flash_wg_k_offset(kk, bRows)));
}

/**
 * acc[64 x D] += P[64 x K] tile[0..K, 0..D), P as mma A fragments in registers (K / 16 of them), the 64-row tile read
 * MN-major (16 of its rows per instruction; its two panels, at D = 128, 64 * 128 bytes apart): issued, not waited for.
 */
template <typename T, int D, int K>
__device__ __forceinline__ void flash_wg_times_tile(float* acc, const unsigned (*p)[4], unsigned tile) {
    const unsigned long long dt = flash_wg_desc(tile, 64 * 128);
#pragma unroll
    for (int kk = 0; kk < K / 16; kk++) flash_wg_rs<T, D>(acc, p[kk], flash_wg_desc_plus(dt, kk * 16 * 128));
}

/**
 * The forward on WG warpgroups of 64 query rows each (WG 64 rows per block), sharing each key tile: S = Q K^T as
 * D / 16 wgmma m64n64k16 from the swizzled Q and K tiles, the online softmax as in flash_forward (warp w holds rows
 * 16 w.. in the mma accumulator layout), O += P V as 4 wgmma m64nDk16 with P from registers and V read MN-major. A
 * warpgroup whose rows all precede a key tile skips it. Shared memory: the Q tile, two buffers of (K, V) tiles
 * (cp.async, the next tile copied while this one is multiplied), the queries' segment ids and both key buffers'.
 */
template <typename T, int D, int WG>
__device__ void flash_forward_wg(const T* q, const T* k, const T* v, const int* segments, float scale, T* out, float* lse,
                                 int seq, int kvSeq, int qHeads, int kvHeads) {
    constexpr int BQ = 64 * WG, BK = 64, TILE = 64 * D * 2, THREADS = 128 * WG; // TILE: bytes of a 64-row tile
    JSLOTH_DYNAMIC_SHARED(flash_chunk, flash_smem);
    const unsigned QsA = flash_wg_base(flash_smem), KbA = QsA + WG * TILE, VbA = KbA + 2 * TILE; // K, V: two buffers each
    int* segQ = flash_wg_pointer<int>(flash_smem, VbA + 2 * TILE);
    int* segKb = segQ + BQ;

    const auto [h, b, q0] = flash_query_block(BQ);
    const int g = h / (qHeads / kvHeads), offset = kvSeq - seq;
    const int nq = smaller(BQ, seq - q0);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gr = lane >> 2, tq = lane & 3;
    const int w0 = warp * 16;
    const float scaleLog2 = scale * FLASH_LOG2E;
    const int tiles = (offset + q0 + nq - 1) / BK + 1;
    // the warpgroup from lane 0, so that the compiler sees it warp-uniform and keeps the wgmma descriptors that depend
    // on it in uniform registers (from threadIdx directly, every wgmma paid for moving its descriptor there)
    const int wg = __shfl_sync(0xffffffffu, warp >> 2, 0), wgLastRow = smaller(q0 + 64 * wg + 63, seq - 1);
    const unsigned QwA = QsA + wg * 64 * 128; // this warpgroup's rows in each panel

    flash_wg_fetch_rows<D, BQ, THREADS>(QsA, q, b, q0, nq, seq, qHeads, h);
    if (segments != nullptr) flash_fetch_vector(segQ, segments + (i64) b * seq + q0, nq, BQ);
    flash_wg_fetch_rows<D, BK, THREADS>(KbA, k, b, 0, smaller(BK, kvSeq), kvSeq, kvHeads, g);
    flash_wg_fetch_rows<D, BK, THREADS>(VbA, v, b, 0, smaller(BK, kvSeq), kvSeq, kvHeads, g);
    if (segments != nullptr) flash_fetch_vector(segKb, segments + (i64) b * seq, smaller(BK, kvSeq), BK);
    flash_commit();
    const int row0 = q0 + w0 + gr;

    float o[D / 8][4];
#pragma unroll
    for (int nd = 0; nd < D / 8; nd++) o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.f;
    float m[2] = {neg_inf<float>(), neg_inf<float>()}, l[2] = {0.f, 0.f};

    for (int it = 0; it < tiles; it++) {
        const int k0 = it * BK, buf = it & 1;
        if (it + 1 < tiles) {
            const int n0 = k0 + BK, nn = smaller(BK, kvSeq - n0);
            flash_wg_fetch_rows<D, BK, THREADS>(KbA + (buf ^ 1) * TILE, k, b, n0, nn, kvSeq, kvHeads, g);
            flash_wg_fetch_rows<D, BK, THREADS>(VbA + (buf ^ 1) * TILE, v, b, n0, nn, kvSeq, kvHeads, g);
            if (segments != nullptr) flash_fetch_vector(segKb + (buf ^ 1) * BK, segments + (i64) b * seq + n0, nn, BK);
        }
        flash_commit();
        flash_wait<1>();
        flash_wg_proxy_fence();
        __syncthreads();
        if (WG > 1 && k0 > offset + wgLastRow) { // no row of this warpgroup sees a key of this tile
            __syncthreads();
            continue;
        }
        const int* segK = segKb + buf * BK;
        const unsigned Ks = KbA + buf * TILE, Vs = VbA + buf * TILE;
        float s[BK / 8][4];
#pragma unroll
        for (int nt = 0; nt < BK / 8; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
        flash_wg_fence();
        flash_wg_times_rows<T, D>(&s[0][0], QwA, BQ, Ks, BK);
        flash_wg_commit();
        flash_wg_wait();
#pragma unroll
        for (int nt = 0; nt < BK / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[nt][e] *= scaleLog2;
        const int first = q0 + w0;
        if (segments != nullptr || k0 + BK > kvSeq || k0 + BK - 1 > offset + first || first + 15 >= seq) {
            const int rowA = row0, rowB = rowA + 8;
            const int lastA = rowA < seq ? offset + rowA - k0 - 2 * tq : -1;
            const int lastB = rowB < seq ? offset + rowB - k0 - 2 * tq : -1;
#pragma unroll
            for (int nt = 0; nt < BK / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    if (nt * 8 + (e & 1) > (e < 2 ? lastA : lastB)) s[nt][e] = neg_inf<float>();
            if (segments != nullptr) {
                const int segA = segQ[w0 + gr], segB = segQ[w0 + gr + 8];
#pragma unroll
                for (int nt = 0; nt < BK / 8; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        if (segK[nt * 8 + 2 * tq + (e & 1)] != (e < 2 ? segA : segB)) s[nt][e] = neg_inf<float>();
            }
        }
        float mx[2] = {neg_inf<float>(), neg_inf<float>()}, rowBase[2];
#pragma unroll
        for (int nt = 0; nt < BK / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) mx[e >> 1] = fmaxf(mx[e >> 1], s[nt][e]);
#pragma unroll
        for (int r = 0; r < 2; r++) {
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
            const float mNew = fmaxf(m[r], mx[r]);
            rowBase[r] = mNew == neg_inf<float>() ? 0.f : mNew;
            const float alpha = flash_exp2(m[r] - rowBase[r]);
            m[r] = mNew;
            l[r] *= alpha;
#pragma unroll
            for (int nd = 0; nd < D / 8; nd++) {
                o[nd][2 * r] *= alpha;
                o[nd][2 * r + 1] *= alpha;
            }
        }
        unsigned pa[BK / 16][4];
#pragma unroll
        for (int nt = 0; nt < BK / 8; nt++) {
            float p[4];
#pragma unroll
            for (int e = 0; e < 4; e++) {
                p[e] = flash_exp2(s[nt][e] - rowBase[e >> 1]);
                l[e >> 1] += p[e];
            }
            pa[nt >> 1][2 * (nt & 1)] = FlashMma<T>::pack(p[0], p[1]);
            pa[nt >> 1][2 * (nt & 1) + 1] = FlashMma<T>::pack(p[2], p[3]);
        }
        flash_wg_fence();
        flash_wg_times_tile<T, D, BK>(&o[0][0], pa, Vs);
        flash_wg_commit();
        flash_wg_wait();
        __syncthreads();
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
    flash_store_rows<D>(out, o, l[0] > 0.f ? 1.f / l[0] : 0.f, l[1] > 0.f ? 1.f / l[1] : 0.f, b, q0 + w0, seq, qHeads, h);
    if (tq == 0) {
        const int ra = row0, rb = ra + 8;
        float* lseRows = lse + ((i64) b * qHeads + h) * seq;
        if (ra < seq) lseRows[ra] = l[0] > 0.f ? (m[0] + log2f(l[0])) * FLASH_LN2 : neg_inf<float>();
        if (rb < seq) lseRows[rb] = l[1] > 0.f ? (m[1] + log2f(l[1])) * FLASH_LN2 : neg_inf<float>();
    }
}

/**
 * dK and dV of 64 keys of one kv head on one warpgroup, walking the query tiles of 64 from its own tile on for each
 * query head of its chunk of the group in turn (as flash_backward_dkdv, and stored the same way): S^T = K Q^T and
 * dP^T = V dO^T as wgmma m64n64k16 (both operands K-major), P^T and dS^T by flash_probabilities_t (warp w holds keys
 * 16 w..), dV += P^T dO and dK += dS^T Q as wgmma m64nDk16 with A from registers and dO, Q read MN-major from the same
 * tiles. Shared memory: the K and V tiles, two buffers of (Q, dO) tiles, two of the rows' lse and delta, two of their
 * segment ids, and the keys' segment ids.
 */
template <typename T, int D>
__device__ void flash_backward_dkdv_wg(const T* dOut, const T* q, const T* k, const T* v, const int* segments, float scale,
                                       const float* lse, const float* delta, T* dk, T* dv, float* dkPart, float* dvPart,
                                       int seq, int qHeads, int kvHeads, int chunks) {
    constexpr int BK = 64, BQ = 64, TILE = 64 * D * 2, THREADS = 128;
    JSLOTH_DYNAMIC_SHARED(flash_chunk, flash_smem);
    const unsigned KsA = flash_wg_base(flash_smem), VsA = KsA + TILE, QbA = VsA + TILE, dObA = QbA + 2 * TILE; // Q, dO: two buffers
    float* lseb = flash_wg_pointer<float>(flash_smem, dObA + 2 * TILE);
    float* deltab = lseb + 2 * BQ;
    int* segQb = reinterpret_cast<int*>(deltab + 2 * BQ);
    int* segK = segQb + 2 * BQ;

    const int g = blockIdx.x / chunks, b = blockIdx.y, k0 = blockIdx.z * BK, heads = qHeads / kvHeads / chunks;
    const int h0 = g * chunks * heads + (blockIdx.x % chunks) * heads, nk = smaller(BK, seq - k0);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gr = lane >> 2;
    const float scaleLog2 = scale * FLASH_LOG2E;
    const int steps = (seq - k0 + BQ - 1) / BQ, total = heads * steps; // query tiles from k0 on, for each head

    flash_wg_fetch_rows<D, BK, THREADS>(KsA, k, b, k0, nk, seq, kvHeads, g);
    flash_wg_fetch_rows<D, BK, THREADS>(VsA, v, b, k0, nk, seq, kvHeads, g);
    if (segments != nullptr) flash_fetch_vector(segK, segments + (i64) b * seq + k0, nk, BK);
    auto fetch = [&](int it, int buf) {
        const int h = h0 + it / steps, q0 = k0 + (it % steps) * BQ, nq = smaller(BQ, seq - q0);
        flash_wg_fetch_rows<D, BQ, THREADS>(QbA + buf * TILE, q, b, q0, nq, seq, qHeads, h);
        flash_wg_fetch_rows<D, BQ, THREADS>(dObA + buf * TILE, dOut, b, q0, nq, seq, qHeads, h);
        const i64 r = ((i64) b * qHeads + h) * seq + q0;
        flash_fetch_vector(lseb + buf * BQ, lse + r, nq, BQ);
        flash_fetch_vector(deltab + buf * BQ, delta + r, nq, BQ);
        if (segments != nullptr) flash_fetch_vector(segQb + buf * BQ, segments + (i64) b * seq + q0, nq, BQ);
    };
    fetch(0, 0);
    flash_commit();

    float dka[D / 8][4], dva[D / 8][4];
#pragma unroll
    for (int nd = 0; nd < D / 8; nd++)
#pragma unroll
        for (int e = 0; e < 4; e++) dka[nd][e] = dva[nd][e] = 0.f;
    const int warpFirstKey = k0 + warp * 16, keyA = warpFirstKey + gr;

    for (int it = 0; it < total; it++) {
        const int buf = it & 1, q0 = k0 + (it % steps) * BQ;
        if (it + 1 < total) fetch(it + 1, buf ^ 1);
        flash_commit();
        flash_wait<1>();
        flash_wg_proxy_fence();
        __syncthreads();
        const unsigned Qs = QbA + buf * TILE, dOs = dObA + buf * TILE;
        float s[BQ / 8][4], dp[BQ / 8][4];
#pragma unroll
        for (int nt = 0; nt < BQ / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[nt][e] = dp[nt][e] = 0.f;
        flash_wg_fence_operand<BQ / 2>(&s[0][0]);
        flash_wg_fence_operand<BQ / 2>(&dp[0][0]);
        flash_wg_fence();
        flash_wg_times_rows<T, D>(&s[0][0], KsA, 64, Qs, 64);
        flash_wg_times_rows<T, D>(&dp[0][0], VsA, 64, dOs, 64);
        flash_wg_commit();
        flash_wg_wait();
        flash_probabilities_t<BQ>(s, dp, lseb + buf * BQ, deltab + buf * BQ, segQb + buf * BQ, segK, segments != nullptr,
                                  keyA, warp * 16 + gr, q0, seq, scaleLog2, q0 < warpFirstKey + 15, q0 + BQ > seq);
        unsigned pf[BQ / 16][4], dsf[BQ / 16][4];
#pragma unroll
        for (int nt = 0; nt < BQ / 8; nt++) {
            pf[nt >> 1][2 * (nt & 1)] = FlashMma<T>::pack(s[nt][0], s[nt][1]);
            pf[nt >> 1][2 * (nt & 1) + 1] = FlashMma<T>::pack(s[nt][2], s[nt][3]);
            dsf[nt >> 1][2 * (nt & 1)] = FlashMma<T>::pack(dp[nt][0], dp[nt][1]);
            dsf[nt >> 1][2 * (nt & 1) + 1] = FlashMma<T>::pack(dp[nt][2], dp[nt][3]);
        }
        flash_wg_fence();
        flash_wg_times_tile<T, D, BQ>(&dva[0][0], pf, dOs);
        flash_wg_times_tile<T, D, BQ>(&dka[0][0], dsf, Qs);
        flash_wg_commit();
        flash_wg_wait();
        __syncthreads();
    }
    flash_store_dkdv<D>(dk, dv, dkPart, dvPart, dka, dva, scale, b, warpFirstKey, seq, kvHeads, chunks);
}

/**
 * dQ of 64 queries on one warpgroup, walking the key tiles of 64 up to its last row: S = Q K^T and dP = dO V^T as
 * wgmma m64n64k16, P and dS as in flash_backward_dq, dQ += dS K as wgmma m64nDk16 with dS from registers and K read
 * MN-major. Shared memory: the Q and dO tiles, two buffers of (K, V) tiles, the queries' segment ids and both key
 * buffers'.
 */
template <typename T, int D>
__device__ void flash_backward_dq_wg(const T* dOut, const T* q, const T* k, const T* v, const int* segments, float scale,
                                     const float* lse, const float* delta, T* dq, int seq, int qHeads, int kvHeads) {
    constexpr int BQ = 64, BK = 64, TILE = 64 * D * 2, THREADS = 128;
    JSLOTH_DYNAMIC_SHARED(flash_chunk, flash_smem);
    const unsigned QsA = flash_wg_base(flash_smem), dOsA = QsA + TILE, KbA = dOsA + TILE, VbA = KbA + 2 * TILE; // K, V: two buffers
    int* segQ = flash_wg_pointer<int>(flash_smem, VbA + 2 * TILE);
    int* segKb = segQ + BQ;

    const auto [h, b, q0] = flash_query_block(BQ);
    const int g = h / (qHeads / kvHeads);
    const int nq = smaller(BQ, seq - q0);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gr = lane >> 2, tq = lane & 3;
    const int w0 = warp * 16;
    const float scaleLog2 = scale * FLASH_LOG2E;
    const int tiles = (q0 + nq - 1) / BK + 1;

    flash_wg_fetch_rows<D, BQ, THREADS>(QsA, q, b, q0, nq, seq, qHeads, h);
    flash_wg_fetch_rows<D, BQ, THREADS>(dOsA, dOut, b, q0, nq, seq, qHeads, h);
    if (segments != nullptr) flash_fetch_vector(segQ, segments + (i64) b * seq + q0, nq, BQ);
    flash_wg_fetch_rows<D, BK, THREADS>(KbA, k, b, 0, smaller(BK, seq), seq, kvHeads, g);
    flash_wg_fetch_rows<D, BK, THREADS>(VbA, v, b, 0, smaller(BK, seq), seq, kvHeads, g);
    if (segments != nullptr) flash_fetch_vector(segKb, segments + (i64) b * seq, smaller(BK, seq), BK);
    flash_commit();
    const int first = q0 + w0, rowA = first + gr, rowB = rowA + 8;
    const i64 statA = ((i64) b * qHeads + h) * seq + rowA, statB = statA + 8;
    const float lseA = rowA < seq ? lse[statA] * FLASH_LOG2E : 0.f, lseB = rowB < seq ? lse[statB] * FLASH_LOG2E : 0.f;
    const float deltaA = rowA < seq ? delta[statA] : 0.f, deltaB = rowB < seq ? delta[statB] : 0.f;
    const int maskFrom = first + 15 < seq ? first - BK + 2 : 0;
    const int lastRowA = rowA < seq ? rowA - 2 * tq : -1, lastRowB = rowB < seq ? rowB - 2 * tq : -1;

    float dqa[D / 8][4];
#pragma unroll
    for (int nd = 0; nd < D / 8; nd++) dqa[nd][0] = dqa[nd][1] = dqa[nd][2] = dqa[nd][3] = 0.f;

    for (int it = 0; it < tiles; it++) {
        const int k0 = it * BK, buf = it & 1;
        if (it + 1 < tiles) {
            const int n0 = k0 + BK, nn = smaller(BK, seq - n0);
            flash_wg_fetch_rows<D, BK, THREADS>(KbA + (buf ^ 1) * TILE, k, b, n0, nn, seq, kvHeads, g);
            flash_wg_fetch_rows<D, BK, THREADS>(VbA + (buf ^ 1) * TILE, v, b, n0, nn, seq, kvHeads, g);
            if (segments != nullptr) flash_fetch_vector(segKb + (buf ^ 1) * BK, segments + (i64) b * seq + n0, nn, BK);
        }
        flash_commit();
        flash_wait<1>();
        flash_wg_proxy_fence();
        __syncthreads();
        const unsigned Ks = KbA + buf * TILE, Vs = VbA + buf * TILE;
        float s[BK / 8][4], dp[BK / 8][4];
#pragma unroll
        for (int nt = 0; nt < BK / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[nt][e] = dp[nt][e] = 0.f;
        flash_wg_fence();
        flash_wg_times_rows<T, D>(&s[0][0], QsA, 64, Ks, 64);
        flash_wg_times_rows<T, D>(&dp[0][0], dOsA, 64, Vs, 64);
        flash_wg_commit();
        flash_wg_wait();
#pragma unroll
        for (int nt = 0; nt < BK / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[nt][e] = flash_exp2(__fmaf_rn(s[nt][e], scaleLog2, -(e < 2 ? lseA : lseB)));
        if (k0 >= maskFrom) {
            const int lastTileA = lastRowA - k0, lastTileB = lastRowB - k0;
#pragma unroll
            for (int nt = 0; nt < BK / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    if (nt * 8 + (e & 1) > (e < 2 ? lastTileA : lastTileB)) s[nt][e] = 0.f;
        }
        if (segments != nullptr) {
            const int* segK = segKb + buf * BK;
            const int segA = segQ[w0 + gr], segB = segQ[w0 + gr + 8];
#pragma unroll
            for (int nt = 0; nt < BK / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    if (segK[nt * 8 + 2 * tq + (e & 1)] != (e < 2 ? segA : segB)) s[nt][e] = 0.f;
        }
        unsigned dsf[BK / 16][4];
#pragma unroll
        for (int nt = 0; nt < BK / 8; nt++) {
            float d[4];
#pragma unroll
            for (int e = 0; e < 4; e++) d[e] = s[nt][e] * (dp[nt][e] - (e < 2 ? deltaA : deltaB));
            dsf[nt >> 1][2 * (nt & 1)] = FlashMma<T>::pack(d[0], d[1]);
            dsf[nt >> 1][2 * (nt & 1) + 1] = FlashMma<T>::pack(d[2], d[3]);
        }
        flash_wg_fence();
        flash_wg_times_tile<T, D, BK>(&dqa[0][0], dsf, Ks);
        flash_wg_commit();
        flash_wg_wait();
        __syncthreads();
    }
    flash_store_rows<D>(dq, dqa, scale, scale, b, q0 + w0, seq, qHeads, h);
}

// ------------------------------------------------------------------ kernels, one per head dimension

#define FLASH_FORWARD_ARGS q, k, v, segments, scale, out, lse, seq, kvSeq, qHeads, kvHeads
#define FLASH_DKDV_ARGS dOut, q, k, v, segments, scale, lse, delta, dk, dv, dkPart, dvPart, seq, qHeads, kvHeads, chunks
#define FLASH_DQ_ARGS dOut, q, k, v, segments, scale, lse, delta, dq, seq, qHeads, kvHeads

// forward: 16 query rows per warp (64 per block); _mt2: 32 (128 per block), at D = 128 only
template <typename T>
__global__ void flash_attention_forward_d64_kernel(const T* q, const T* k, const T* v, const int* segments, float scale,
                                                   T* out, float* lse, int seq, int kvSeq, int qHeads, int kvHeads) {
    if constexpr (FlashMma<T>::supported) flash_forward<T, 64, 1>(FLASH_FORWARD_ARGS);
    else __trap();
}

template <typename T>
__global__ void flash_attention_forward_d128_kernel(const T* q, const T* k, const T* v, const int* segments, float scale,
                                                    T* out, float* lse, int seq, int kvSeq, int qHeads, int kvHeads) {
    if constexpr (FlashMma<T>::supported) flash_forward<T, 128, 1>(FLASH_FORWARD_ARGS);
    else __trap();
}

template <typename T>
__global__ void flash_attention_forward_d128_mt2_kernel(const T* q, const T* k, const T* v, const int* segments, float scale,
                                                        T* out, float* lse, int seq, int kvSeq, int qHeads, int kvHeads) {
    if constexpr (FlashMma<T>::supported) flash_forward<T, 128, 2>(FLASH_FORWARD_ARGS);
    else __trap();
}

template <typename T>
__global__ void flash_attention_dkdv_d64_kernel(const T* dOut, const T* q, const T* k, const T* v, const int* segments,
                                                float scale, const float* lse, const float* delta, T* dk, T* dv,
                                                float* dkPart, float* dvPart, int seq, int qHeads, int kvHeads, int chunks) {
    if constexpr (FlashMma<T>::supported) flash_backward_dkdv<T, 64>(FLASH_DKDV_ARGS);
    else __trap();
}

template <typename T>
__global__ void flash_attention_dkdv_d128_kernel(const T* dOut, const T* q, const T* k, const T* v, const int* segments,
                                                 float scale, const float* lse, const float* delta, T* dk, T* dv,
                                                 float* dkPart, float* dvPart, int seq, int qHeads, int kvHeads, int chunks) {
    if constexpr (FlashMma<T>::supported) flash_backward_dkdv<T, 128>(FLASH_DKDV_ARGS);
    else __trap();
}

// dQ: like the forward, 16 query rows per warp (64 per block); _mt2: 32 (128 per block), at D = 128 only
template <typename T>
__global__ void flash_attention_dq_d64_kernel(const T* dOut, const T* q, const T* k, const T* v, const int* segments,
                                              float scale, const float* lse, const float* delta, T* dq, int seq, int qHeads,
                                              int kvHeads) {
    if constexpr (FlashMma<T>::supported) flash_backward_dq<T, 64, 1>(FLASH_DQ_ARGS);
    else __trap();
}

template <typename T>
__global__ void flash_attention_dq_d128_kernel(const T* dOut, const T* q, const T* k, const T* v, const int* segments,
                                               float scale, const float* lse, const float* delta, T* dq, int seq, int qHeads,
                                               int kvHeads) {
    if constexpr (FlashMma<T>::supported) flash_backward_dq<T, 128, 1>(FLASH_DQ_ARGS);
    else __trap();
}

template <typename T>
__global__ void flash_attention_dq_d128_mt2_kernel(const T* dOut, const T* q, const T* k, const T* v, const int* segments,
                                                   float scale, const float* lse, const float* delta, T* dq, int seq,
                                                   int qHeads, int kvHeads) {
    if constexpr (FlashMma<T>::supported) flash_backward_dq<T, 128, 2>(FLASH_DQ_ARGS);
    else __trap();
}

// wgmma kernels (compute capability 9.0, compiled for sm_90a), D = 128 then D = 64: forward with two warpgroups (128
// queries per block), dK/dV (64 keys) and dQ (64 queries) with one; elsewhere they trap, and the host never launches them
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FLASH_WGMMA_BODY(...)                                 \
    if constexpr (FlashWgmma<T>::supported) __VA_ARGS__;      \
    else __trap()
#else
#define FLASH_WGMMA_BODY(...) __trap()
#endif

template <typename T>
__global__ void flash_attention_forward_d128_wgmma_kernel(const T* q, const T* k, const T* v, const int* segments, float scale,
                                                          T* out, float* lse, int seq, int kvSeq, int qHeads, int kvHeads) {
    FLASH_WGMMA_BODY(flash_forward_wg<T, 128, 2>(FLASH_FORWARD_ARGS));
}

template <typename T>
__global__ void flash_attention_dkdv_d128_wgmma_kernel(const T* dOut, const T* q, const T* k, const T* v, const int* segments,
                                                       float scale, const float* lse, const float* delta, T* dk, T* dv,
                                                       float* dkPart, float* dvPart, int seq, int qHeads, int kvHeads, int chunks) {
    FLASH_WGMMA_BODY(flash_backward_dkdv_wg<T, 128>(FLASH_DKDV_ARGS));
}

template <typename T>
__global__ void flash_attention_dq_d128_wgmma_kernel(const T* dOut, const T* q, const T* k, const T* v, const int* segments,
                                                     float scale, const float* lse, const float* delta, T* dq, int seq,
                                                     int qHeads, int kvHeads) {
    FLASH_WGMMA_BODY(flash_backward_dq_wg<T, 128>(FLASH_DQ_ARGS));
}

template <typename T>
__global__ void flash_attention_forward_d64_wgmma_kernel(const T* q, const T* k, const T* v, const int* segments, float scale,
                                                          T* out, float* lse, int seq, int kvSeq, int qHeads, int kvHeads) {
    FLASH_WGMMA_BODY(flash_forward_wg<T, 64, 2>(FLASH_FORWARD_ARGS));
}

template <typename T>
__global__ void flash_attention_dkdv_d64_wgmma_kernel(const T* dOut, const T* q, const T* k, const T* v, const int* segments,
                                                       float scale, const float* lse, const float* delta, T* dk, T* dv,
                                                       float* dkPart, float* dvPart, int seq, int qHeads, int kvHeads, int chunks) {
    FLASH_WGMMA_BODY(flash_backward_dkdv_wg<T, 64>(FLASH_DKDV_ARGS));
}

template <typename T>
__global__ void flash_attention_dq_d64_wgmma_kernel(const T* dOut, const T* q, const T* k, const T* v, const int* segments,
                                                     float scale, const float* lse, const float* delta, T* dq, int seq,
                                                     int qHeads, int kvHeads) {
    FLASH_WGMMA_BODY(flash_backward_dq_wg<T, 64>(FLASH_DQ_ARGS));
}

/**
 * out[b, t, g, :] = sum over j < chunks of part[b, t, g*chunks + j, :], in that order: dK or dV of each kv head from
 * its group's chunks (flash_backward_dkdv).
 */
template <typename T>
__global__ void flash_attention_chunk_sum_kernel(const float* part, T* out, i64 kvRows, int chunks, int headDim) {
    JSLOTH_GRID_STRIDE(i, kvRows * headDim) {
        const i64 row = i / headDim;
        const int c = (int) (i - row * headDim);
        const float* p = part + row * chunks * headDim + c;
        float sum = 0.f;
        for (int j = 0; j < chunks; j++) sum += p[(i64) j * headDim];
        store(out, i, sum);
    }
}
