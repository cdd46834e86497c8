// Causal grouped-query attention, FlashAttention-2 style: tiles of `tile` queries and `tile` keys in shared
// memory, an online softmax, and only the row log-sum-exp kept for the backward pass (no T x T matrix in global
// memory). q, out, dOut, dq: [batch, seq, qHeads, headDim]; k, v, dk, dv: [batch, kvSeq, kvHeads, headDim];
// lse: [batch, qHeads, seq]; segments (optional, I32 [batch, seq], only with kvSeq == seq): a query sees a key
// only within its own segment. Query i sits at position kvSeq - seq + i. All sums run in a fixed order, so the
// results are deterministic; the backward pass computes dK/dV (per key tile, over the query heads of the group)
// and dQ (per query tile) in two kernels instead of accumulating dQ with atomics.
//
// Dynamic shared memory, in units of Acc<T> (A) unless noted, with tile rows padded to L = D + 1 elements so that
// threads reading different rows of a tile hit different banks; the host sizes it with the same formulas
// (dev.jsloth.cuda.AttentionOp):
//   forward:  4*tile*L + tile*(tile+1) + 3*tile  (A)  +  2*tile ints  (score rows padded too)
//   dK/dV:    6*tile*L + 2*tile*tile + 2*tile (A) +  2*tile ints
//   dQ:       5*tile*L + tile*tile + 2*tile   (A) +  2*tile ints
#include "common.cuh"

/** Copies rows [row0, row0+count) of head h of batch b into a zero-filled [tile, D] tile of row stride D + 1. */
template <typename A, typename T>
__device__ __forceinline__ void load_tile(A* dst, const T* src, int b, int row0, int count, int len, int heads, int h,
                                          int D, int tile) {
    for (int e = threadIdx.x; e < tile * D; e += blockDim.x) {
        const int r = e / D, c = e - r * D;
        dst[r * (D + 1) + c] = r < count ? load<A>(src, (((i64) b * len + row0 + r) * heads + h) * D + c) : A(0);
    }
}

/** Segment ids of rows [row0, row0+count) of batch b (0 without segments or past the end). */
__device__ __forceinline__ void load_segments(int* dst, const int* segments, int b, int row0, int count, int seq, int tile) {
    for (int r = threadIdx.x; r < tile; r += blockDim.x)
        dst[r] = (segments != nullptr && r < count) ? segments[(i64) b * seq + row0 + r] : 0;
}

template <typename T>
__global__ void attention_forward_kernel(const T* q, const T* k, const T* v, const int* segments, double scaleArg,
                                         T* out, T* lse, int batch, int seq, int kvSeq, int qHeads, int kvHeads,
                                         int headDim, int tile) {
    typedef typename Acc<T>::type A;
    JSLOTH_DYNAMIC_SHARED(double, attention_smem);
    const int D = headDim, L = headDim + 1;
    A* Qs = (A*) attention_smem;
    A* Ks = Qs + tile * L;
    A* Vs = Ks + tile * L;
    A* Os = Vs + tile * L;
    A* Ss = Os + tile * L;
    const int SL = tile + 1; // score row stride
    A* rowMax = Ss + tile * SL;
    A* rowSum = rowMax + tile;
    A* rowScale = rowSum + tile;
    int* segQ = (int*) (rowScale + tile);
    int* segK = segQ + tile;

    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * tile;
    const int g = h / (qHeads / kvHeads);
    const int offset = kvSeq - seq;
    const int nq = smaller(tile, seq - q0);
    const A scale = (A) scaleArg;
    const int tid = threadIdx.x, nt = blockDim.x;

    load_tile(Qs, q, b, q0, nq, seq, qHeads, h, D, tile);
    for (int e = tid; e < tile * L; e += nt) Os[e] = A(0);
    for (int i = tid; i < tile; i += nt) {
        rowMax[i] = neg_inf<A>();
        rowSum[i] = A(0);
    }
    load_segments(segQ, segments, b, q0, nq, seq, tile);
    __syncthreads();

    const int lastKey = offset + q0 + nq - 1; // the last key any query of this tile sees
    for (int k0 = 0; k0 <= lastKey; k0 += tile) {
        const int nk = smaller(tile, kvSeq - k0);
        load_tile(Ks, k, b, k0, nk, kvSeq, kvHeads, g, D, tile);
        load_tile(Vs, v, b, k0, nk, kvSeq, kvHeads, g, D, tile);
        load_segments(segK, segments, b, k0, nk, seq, tile);
        __syncthreads();
        for (int e = tid; e < tile * tile; e += nt) {
            const int i = e / tile, j = e - i * tile;
            A s = neg_inf<A>();
            if (i < nq && j < nk && k0 + j <= offset + q0 + i && (segments == nullptr || segQ[i] == segK[j])) {
                A dot = 0;
                for (int c = 0; c < D; c++) dot += Qs[i * L + c] * Ks[j * L + c];
                s = dot * scale;
            }
            Ss[i * SL + j] = s;
        }
        __syncthreads();
        for (int i = tid; i < tile; i += nt) { // online softmax, one thread per query row
            const A oldMax = rowMax[i];
            A m = oldMax;
            for (int j = 0; j < tile; j++) m = Ss[i * SL + j] > m ? Ss[i * SL + j] : m;
            A sum = 0;
            for (int j = 0; j < tile; j++) {
                const A s = Ss[i * SL + j];
                const A p = s == neg_inf<A>() ? A(0) : math_exp(s - m);
                Ss[i * SL + j] = p;
                sum += p;
            }
            const A rescale = m == neg_inf<A>() ? A(1) : math_exp(oldMax - m);
            rowMax[i] = m;
            rowSum[i] = rowSum[i] * rescale + sum;
            rowScale[i] = rescale;
        }
        __syncthreads();
        for (int e = tid; e < tile * D; e += nt) {
            const int i = e / D, c = e - i * D;
            A acc = Os[i * L + c] * rowScale[i];
            for (int j = 0; j < nk; j++) acc += Ss[i * SL + j] * Vs[j * L + c];
            Os[i * L + c] = acc;
        }
        __syncthreads();
    }
    for (int e = tid; e < nq * D; e += nt) {
        const int i = e / D, c = e - i * D;
        store(out, (((i64) b * seq + q0 + i) * qHeads + h) * D + c, Os[i * L + c] / rowSum[i]);
    }
    for (int i = tid; i < nq; i += nt)
        store(lse, ((i64) b * qHeads + h) * seq + q0 + i, rowMax[i] + math_log(rowSum[i]));
}

/**
 * delta[b, h, t] = sum_c dOut[b,t,h,c] * out[b,t,h,c]. Where a row is a power-of-two number (at most 32) of 16-byte
 * packs and both tensors are 16-byte aligned, each lane reads one pack of both (a warp takes 32 / packs rows at a
 * time, one load each instead of a loop of 2-byte loads: 37 -> ~12 us per 8B layer); otherwise one warp per row.
 */
template <typename T>
__global__ void attention_delta_kernel(const T* dOut, const T* out, typename Acc<T>::type* delta, int batch, int seq,
                                       int qHeads, int headDim) {
    typedef typename Acc<T>::type A;
    constexpr int N = Pack16<T>::N;
    const i64 rows = (i64) batch * seq * qHeads;
    const int lane = threadIdx.x & 31;
    const i64 warp = ((i64) blockIdx.x * blockDim.x + threadIdx.x) >> 5, warpsPerGrid = ((i64) gridDim.x * blockDim.x) >> 5;
    const int packs = headDim / N;
    auto write = [&](i64 row, A acc) {
        const int h = (int) (row % qHeads);
        const i64 bt = row / qHeads;
        const int t = (int) (bt % seq), b = (int) (bt / seq);
        delta[((i64) b * qHeads + h) * seq + t] = acc;
    };
    if (packs > 0 && headDim % N == 0 && packs <= 32 && (packs & (packs - 1)) == 0 && aligned16(dOut) && aligned16(out)) {
        const int perWarp = 32 / packs, sub = lane / packs, part = lane % packs;
        for (i64 first = warp * perWarp; first < rows; first += warpsPerGrid * perWarp) {
            const i64 row = first + sub;
            A acc = 0;
            if (row < rows) {
                const Pack16<T> d = load_pack(dOut, row * packs + part), o = load_pack(out, row * packs + part);
#pragma unroll
                for (int i = 0; i < N; i++) acc += Widen<A>::from(d.v[i]) * Widen<A>::from(o.v[i]);
            }
            for (int o = packs / 2; o > 0; o >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, o);
            if (part == 0 && row < rows) write(row, acc);
        }
        return;
    }
    for (i64 row = warp; row < rows; row += warpsPerGrid) {
        A acc = 0;
        for (int c = lane; c < headDim; c += 32) acc += load<A>(dOut, row * headDim + c) * load<A>(out, row * headDim + c);
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, o);
        if (lane == 0) write(row, acc);
    }
}

/**
 * P and dS of one (query tile, key tile) pair: P = exp(scale*q.k - lse), dS = P * (dOut.v - delta) * scale,
 * both 0 where the key is masked. Rows i < nq of Qs/dOs are queries q0+i, columns j < nk keys k0+j.
 */
template <typename A>
__device__ __forceinline__ void attention_scores_backward(A* Ps, A* dSs, const A* Qs, const A* dOs, const A* Ks,
                                                          const A* Vs, const A* lseRow, const A* deltaRow,
                                                          const int* segQ, const int* segK, bool segmented, int q0,
                                                          int nq, int k0, int nk, int D, int tile, A scale) {
    const int L = D + 1;
    for (int e = threadIdx.x; e < tile * tile; e += blockDim.x) {
        const int i = e / tile, j = e - i * tile;
        A p = 0, ds = 0;
        if (i < nq && j < nk && k0 + j <= q0 + i && (!segmented || segQ[i] == segK[j])) {
            A dot = 0, dp = 0;
            for (int c = 0; c < D; c++) {
                dot += Qs[i * L + c] * Ks[j * L + c];
                dp += dOs[i * L + c] * Vs[j * L + c];
            }
            p = math_exp(dot * scale - lseRow[i]);
            ds = p * (dp - deltaRow[i]) * scale;
        }
        if (Ps != nullptr) Ps[e] = p;
        dSs[e] = ds;
    }
}

/** Loads lse and delta of rows [q0, q0+nq) of head h (0 past the end). */
template <typename A, typename T>
__device__ __forceinline__ void load_row_stats(A* lseRow, A* deltaRow, const T* lse, const A* delta, int b, int h,
                                               int q0, int nq, int seq, int qHeads, int tile) {
    for (int i = threadIdx.x; i < tile; i += blockDim.x) {
        const i64 r = ((i64) b * qHeads + h) * seq + q0 + i;
        lseRow[i] = i < nq ? load<A>(lse, r) : A(0);
        deltaRow[i] = i < nq ? delta[r] : A(0);
    }
}

/** dK and dV of one key tile of kv head blockIdx.y, summed over the group's query heads (kvSeq == seq). */
template <typename T>
__global__ void attention_backward_dkdv_kernel(const T* dOut, const T* q, const T* k, const T* v, const int* segments,
                                               double scaleArg, const T* lse, const typename Acc<T>::type* delta,
                                               T* dk, T* dv, int batch, int seq, int qHeads, int kvHeads, int headDim,
                                               int tile) {
    typedef typename Acc<T>::type A;
    JSLOTH_DYNAMIC_SHARED(double, attention_smem);
    const int D = headDim, L = headDim + 1;
    A* Ks = (A*) attention_smem;
    A* Vs = Ks + tile * L;
    A* dKs = Vs + tile * L;
    A* dVs = dKs + tile * L;
    A* Qs = dVs + tile * L;
    A* dOs = Qs + tile * L;
    A* Ps = dOs + tile * L;
    A* dSs = Ps + tile * tile;
    A* lseRow = dSs + tile * tile;
    A* deltaRow = lseRow + tile;
    int* segQ = (int*) (deltaRow + tile);
    int* segK = segQ + tile;

    const int b = blockIdx.z, g = blockIdx.y, k0 = blockIdx.x * tile;
    const int nk = smaller(tile, seq - k0);
    const int group = qHeads / kvHeads;
    const A scale = (A) scaleArg;
    const int tid = threadIdx.x, nt = blockDim.x;

    load_tile(Ks, k, b, k0, nk, seq, kvHeads, g, D, tile);
    load_tile(Vs, v, b, k0, nk, seq, kvHeads, g, D, tile);
    for (int e = tid; e < tile * L; e += nt) {
        dKs[e] = A(0);
        dVs[e] = A(0);
    }
    load_segments(segK, segments, b, k0, nk, seq, tile);
    __syncthreads();

    for (int h = g * group; h < (g + 1) * group; h++) {
        for (int q0 = (k0 / tile) * tile; q0 < seq; q0 += tile) { // query tiles holding rows >= k0
            const int nq = smaller(tile, seq - q0);
            load_tile(Qs, q, b, q0, nq, seq, qHeads, h, D, tile);
            load_tile(dOs, dOut, b, q0, nq, seq, qHeads, h, D, tile);
            load_row_stats(lseRow, deltaRow, lse, delta, b, h, q0, nq, seq, qHeads, tile);
            load_segments(segQ, segments, b, q0, nq, seq, tile);
            __syncthreads();
            attention_scores_backward(Ps, dSs, Qs, dOs, Ks, Vs, lseRow, deltaRow, segQ, segK, segments != nullptr,
                                      q0, nq, k0, nk, D, tile, scale);
            __syncthreads();
            for (int e = tid; e < tile * D; e += nt) {
                const int j = e / D, c = e - j * D;
                A accV = 0, accK = 0;
                for (int i = 0; i < nq; i++) {
                    accV += Ps[i * tile + j] * dOs[i * L + c];
                    accK += dSs[i * tile + j] * Qs[i * L + c];
                }
                dVs[j * L + c] += accV;
                dKs[j * L + c] += accK;
            }
            __syncthreads();
        }
    }
    for (int e = tid; e < nk * D; e += nt) {
        const int j = e / D, c = e - j * D;
        const i64 dst = (((i64) b * seq + k0 + j) * kvHeads + g) * D + c;
        store(dk, dst, dKs[j * L + c]);
        store(dv, dst, dVs[j * L + c]);
    }
}

/** dQ of one query tile of head blockIdx.y: dq = sum over visible keys of dS * k (kvSeq == seq). */
template <typename T>
__global__ void attention_backward_dq_kernel(const T* dOut, const T* q, const T* k, const T* v, const int* segments,
                                             double scaleArg, const T* lse, const typename Acc<T>::type* delta, T* dq,
                                             int batch, int seq, int qHeads, int kvHeads, int headDim, int tile) {
    typedef typename Acc<T>::type A;
    JSLOTH_DYNAMIC_SHARED(double, attention_smem);
    const int D = headDim, L = headDim + 1;
    A* Qs = (A*) attention_smem;
    A* dOs = Qs + tile * L;
    A* dQs = dOs + tile * L;
    A* Ks = dQs + tile * L;
    A* Vs = Ks + tile * L;
    A* dSs = Vs + tile * L;
    A* lseRow = dSs + tile * tile;
    A* deltaRow = lseRow + tile;
    int* segQ = (int*) (deltaRow + tile);
    int* segK = segQ + tile;

    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * tile;
    const int g = h / (qHeads / kvHeads);
    const int nq = smaller(tile, seq - q0);
    const A scale = (A) scaleArg;
    const int tid = threadIdx.x, nt = blockDim.x;

    load_tile(Qs, q, b, q0, nq, seq, qHeads, h, D, tile);
    load_tile(dOs, dOut, b, q0, nq, seq, qHeads, h, D, tile);
    for (int e = tid; e < tile * L; e += nt) dQs[e] = A(0);
    load_row_stats(lseRow, deltaRow, lse, delta, b, h, q0, nq, seq, qHeads, tile);
    load_segments(segQ, segments, b, q0, nq, seq, tile);
    __syncthreads();

    const int lastKey = q0 + nq - 1;
    for (int k0 = 0; k0 <= lastKey; k0 += tile) {
        const int nk = smaller(tile, seq - k0);
        load_tile(Ks, k, b, k0, nk, seq, kvHeads, g, D, tile);
        load_tile(Vs, v, b, k0, nk, seq, kvHeads, g, D, tile);
        load_segments(segK, segments, b, k0, nk, seq, tile);
        __syncthreads();
        attention_scores_backward((A*) nullptr, dSs, Qs, dOs, Ks, Vs, lseRow, deltaRow, segQ, segK,
                                  segments != nullptr, q0, nq, k0, nk, D, tile, scale);
        __syncthreads();
        for (int e = tid; e < tile * D; e += nt) {
            const int i = e / D, c = e - i * D;
            A acc = 0;
            for (int j = 0; j < nk; j++) acc += dSs[i * tile + j] * Ks[j * L + c];
            dQs[i * L + c] += acc;
        }
        __syncthreads();
    }
    for (int e = tid; e < nq * D; e += nt) {
        const int i = e / D, c = e - i * D;
        store(dq, (((i64) b * seq + q0 + i) * qHeads + h) * D + c, dQs[i * L + c]);
    }
}
