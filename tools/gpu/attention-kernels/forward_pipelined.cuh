// An experiment for the attention harness (bench.cu includes it inside namespace var, after flash_attention.cu), not
// product code: flash_forward_wg with each warpgroup's softmax of key tile j overlapping its P V product of tile j - 1
// on the tensor cores (FlashAttention-3's intra-warpgroup pipelining). Per tile j: issue S_j = Q K_j^T, issue
// O += P_{j-1} V_{j-1}, wait for S_j only, softmax S_j (P_j, the new row maxima, l), wait for the P V product, rescale
// O. O sees the same operations in the same order as in flash_forward_wg (O scaled by alpha_j after P_{j-1} V_{j-1} is
// added, before P_j V_j), so the outputs should be the same bits. K and V tiles in three buffers (tile j + 2 is copied
// once the P V product of tile j - 1 has read its buffer), so a block takes ~130 KB of shared memory (one per SM at
// WG = 2); every warpgroup takes every tile (a tile past its rows is fully masked and changes nothing), so no wgmma
// sits in a divergent branch.
// Status (session 14, written without a GPU, not yet run): compiles to 156 registers, but ptxas reports C7513 ("wgmma
// serialized: non-wgmma instructions defining input registers of a wgmma between start and end of the pipeline
// stage") whenever the real softmax runs while the P V product is in flight; with a trivial stand-in it does not.
// Tried: all descriptors computed and pinned before the fence, P's fragments / V's descriptors / the scale-d register
// pinned until the wait, scale-d = 0 instead of zeroing S. Next: read the SASS on the GPU machine, then measure.

/** Keeps the compiler from moving or reading accumulator registers that an issued wgmma still writes. */
template <int N>
__device__ __forceinline__ void flash_pin(float* acc) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(acc[i])::"memory");
}

template <int N>
__device__ __forceinline__ void flash_pin_fragments(unsigned* a) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+r"(a[i])::"memory");
}

/** wgmma m64n64k16 bf16 with its scale-d operand: accumulate 0 overwrites D (no zeroing of the registers first). */
__device__ __forceinline__ void flash_ss_m64n64_bf16(float* d, unsigned long long a, unsigned long long b, int accumulate) {
    asm volatile("{ .reg .pred p; setp.ne.b32 p, %34, 0; wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, %32, %33, p, 1, 1, 0, 0; }"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "l"(a), "l"(b), "r"(accumulate));
}

/** wgmma m64n128k16 bf16, A from registers, with its scale-d source register given (kept live by the caller). */
__device__ __forceinline__ void flash_rs_m64n128_bf16(float* d, const unsigned* a, unsigned long long b, int accumulate) {
    asm volatile("{ .reg .pred p; setp.ne.b32 p, %69, 0; wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, {%64,%65,%66,%67}, %68, p, 1, 1, 1; }"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate));
}

__device__ __forceinline__ void flash_wg_wait_one() { asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory"); }

template <typename T, int D, int WG>
__device__ void flash_forward_wg_pipelined(const T* q, const T* k, const T* v, const int* segments, float scale, T* out,
                                           float* lse, int seq, int kvSeq, int qHeads, int kvHeads) {
    static_assert(D == 128, "the P V product is written for m64n128k16 (D = 128)");
    constexpr int BQ = 64 * WG, BK = 64, TILE = 64 * D * 2, THREADS = 128 * WG, BUFS = 3;
    JSLOTH_DYNAMIC_SHARED(flash_chunk, flash_smem);
    const unsigned QsA = flash_wg_base(flash_smem), KbA = QsA + WG * TILE, VbA = KbA + BUFS * TILE;
    int* segQ = flash_wg_pointer<int>(flash_smem, VbA + BUFS * TILE);
    int* segKb = segQ + BQ;

    const int b = blockIdx.z, h = blockIdx.y, q0 = (gridDim.x - 1 - blockIdx.x) * BQ;
    const int g = h / (qHeads / kvHeads), offset = kvSeq - seq;
    const int nq = smaller(BQ, seq - q0);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gr = lane >> 2, tq = lane & 3;
    const int w0 = warp * 16;
    const float scaleLog2 = scale * FLASH_LOG2E;
    const int tiles = (offset + q0 + nq - 1) / BK + 1;
    const int wg = warp >> 2;
    const unsigned QwA = QsA + wg * 64 * 128;

    auto fetch = [&](int tile) { // key tile `tile` into its buffer (one commit group per call, empty past the last tile)
        if (tile < tiles) {
            const int n0 = tile * BK, nn = smaller(BK, kvSeq - n0), buf = tile % BUFS;
            flash_wg_fetch_rows<D, BK, THREADS>(KbA + buf * TILE, k, b, n0, nn, kvSeq, kvHeads, g);
            flash_wg_fetch_rows<D, BK, THREADS>(VbA + buf * TILE, v, b, n0, nn, kvSeq, kvHeads, g);
            if (segments != nullptr) flash_fetch_vector(segKb + buf * BK, segments + (i64) b * seq + n0, nn, BK);
        }
        flash_commit();
    };
    flash_wg_fetch_rows<D, BQ, THREADS>(QsA, q, b, q0, nq, seq, qHeads, h);
    if (segments != nullptr) flash_fetch_vector(segQ, segments + (i64) b * seq + q0, nq, BQ);
    fetch(0); // with Q
    fetch(1);
    const int row0 = q0 + w0 + gr;

    float o[D / 8][4];
#pragma unroll
    for (int nd = 0; nd < D / 8; nd++) o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.f;
    float m[2] = {neg_inf<float>(), neg_inf<float>()}, l[2] = {0.f, 0.f};
    unsigned prev[BK / 16][4]; // P of the last tile, waiting for its P V product with the V tile at prevV
    unsigned prevV = 0;

    // S = Q K^T of a tile, scaled and masked, its row maxima into m (alpha: the old maxima's factor), P into pa, l
    // rescaled and summed; O is not touched
    auto softmax = [&](float (*s)[4], int k0, const int* segK, float* alpha, unsigned (*pa)[4]) {
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
            alpha[r] = exp2f(m[r] - rowBase[r]);
            m[r] = mNew;
            l[r] *= alpha[r];
        }
#pragma unroll
        for (int nt = 0; nt < BK / 8; nt++) {
            float p[4];
#pragma unroll
            for (int e = 0; e < 4; e++) {
                p[e] = exp2f(s[nt][e] - rowBase[e >> 1]);
                l[e >> 1] += p[e];
            }
            pa[nt >> 1][2 * (nt & 1)] = FlashMma<T>::pack(p[0], p[1]);
            pa[nt >> 1][2 * (nt & 1) + 1] = FlashMma<T>::pack(p[2], p[3]);
        }
    };

    // tile 0 on its own (nothing to overlap yet). Every warpgroup takes every tile of the block, past its own last row
    // too: such a tile is fully masked (P = 0, the maxima stay), which leaves O and l exactly as they were, and keeps
    // the wgmma issue out of divergent branches (ptxas serializes wgmma around those)
    {
        flash_wait<1>();
        flash_wg_proxy_fence();
        __syncthreads();
        float s[BK / 8][4], alpha[2];
#pragma unroll
        for (int nt = 0; nt < BK / 8; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
        flash_wg_fence();
        flash_wg_times_rows<T, D>(&s[0][0], QwA, BQ, KbA, BK);
        flash_wg_commit();
        flash_wg_wait();
        softmax(s, 0, segKb, alpha, prev);
        prevV = VbA;
        // O is still 0: no rescale; tile 0's buffer stays until its P V product has run (next iteration)
        fetch(2);
    }
    for (int it = 1; it < tiles; it++) {
        const int k0 = it * BK, buf = it % BUFS;
        flash_wait<1>(); // this tile's copy (the next one may still be in flight)
        flash_wg_proxy_fence();
        __syncthreads();
        const unsigned Ks = KbA + buf * TILE;
        float s[BK / 8][4], alpha[2];
        // every descriptor before the fence: ptxas serializes wgmma whose inputs are defined inside the issue group
        unsigned long long dq[D / 16], dk[D / 16], dv[BK / 16];
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            dq[kk] = flash_wg_desc(QwA + flash_wg_k_offset(kk, BQ), 16);
            dk[kk] = flash_wg_desc(Ks + flash_wg_k_offset(kk, BK), 16);
            asm volatile("" : "+l"(dq[kk]), "+l"(dk[kk]));
        }
#pragma unroll
        for (int kk = 0; kk < BK / 16; kk++) {
            dv[kk] = flash_wg_desc(prevV + kk * 16 * 128, 64 * 128);
            asm volatile("" : "+l"(dv[kk]));
        }
        flash_pin<BK / 2>(&s[0][0]);
        flash_pin<D / 2>(&o[0][0]);
        flash_pin_fragments<BK / 4>(&prev[0][0]);
        flash_wg_fence();
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) flash_ss_m64n64_bf16(&s[0][0], dq[kk], dk[kk], kk > 0);
        flash_wg_commit();
        int one = 1;
        asm volatile("" : "+r"(one));
#pragma unroll
        for (int kk = 0; kk < BK / 16; kk++) flash_rs_m64n128_bf16(&o[0][0], prev[kk], dv[kk], one);
        flash_wg_commit();
        flash_wg_wait_one(); // S only: the P V product runs on under the softmax
        flash_pin<BK / 2>(&s[0][0]);
        unsigned pa[BK / 16][4];
        softmax(s, k0, segKb + buf * BK, alpha, pa);
        flash_wg_wait(); // the last tile's P V product is in O now
        flash_pin<D / 2>(&o[0][0]);
        // read by that product until now: their registers must not be reused (for pa, the softmax) before
        flash_pin_fragments<BK / 4>(&prev[0][0]);
#pragma unroll
        for (int kk = 0; kk < BK / 16; kk++) asm volatile("" : "+l"(dv[kk]));
        asm volatile("" : "+r"(one));
#pragma unroll
        for (int r = 0; r < 2; r++)
#pragma unroll
            for (int nd = 0; nd < D / 8; nd++) {
                o[nd][2 * r] *= alpha[r];
                o[nd][2 * r + 1] *= alpha[r];
            }
#pragma unroll
        for (int i = 0; i < BK / 16; i++)
#pragma unroll
            for (int e = 0; e < 4; e++) prev[i][e] = pa[i][e];
        prevV = VbA + buf * TILE;
        __syncthreads(); // every warpgroup is done with the buffer of tile it - 1 (its V was the last read)
        fetch(it + 2);
    }
    flash_pin<D / 2>(&o[0][0]);
    flash_pin_fragments<BK / 4>(&prev[0][0]);
    flash_wg_fence();
    flash_wg_times_tile<T, D, BK>(&o[0][0], prev, prevV);
    flash_wg_commit();
    flash_wg_wait();
    flash_pin<D / 2>(&o[0][0]);
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

template <typename T, int WG>
__global__ void flash_attention_forward_pipelined_kernel(const T* q, const T* k, const T* v, const int* segments, float scale,
                                                         T* out, float* lse, int seq, int kvSeq, int qHeads, int kvHeads) {
    flash_forward_wg_pipelined<T, HD, WG>(q, k, v, segments, scale, out, lse, seq, kvSeq, qHeads, kvHeads);
}
