// Row-wise cross-entropy. T: logits and their gradient; S: per-row loss and log-sum-exp. Computed in double when
// either type is double, else in float.
#include "common.cuh"

/** Merges the online-softmax state (m2, s2) into (m1, s1): s = sum exp(x - m) over the elements seen. */
template <typename A> __device__ __forceinline__ void merge_softmax(A& m1, A& s1, A m2, A s2) {
    const A m = m1 > m2 ? m1 : m2;
    if (m == neg_inf<A>()) return; // both empty
    s1 = s1 * math_exp(m1 - m) + s2 * math_exp(m2 - m);
    m1 = m;
}

#define CE_THREADS 256

/** The type of per-element work: float for 16-bit logits (their 8 or 11 bits need no more), else the accumulator. */
template <typename T, typename A> struct CeElement { typedef A type; };
template <typename A> struct CeElement<bf16_t, A> { typedef float type; };
template <typename A> struct CeElement<f16_t, A> { typedef float type; };

/** Adds one value to a thread's online-softmax state (m, s). */
template <typename E> __device__ __forceinline__ void ce_add(E v, E& m, E& s) {
    if (v > m) {
        s = s * math_exp(m - v) + E(1);
        m = v;
    } else if (v != neg_inf<E>()) {
        s += math_exp(v - m); // NaN logits make s NaN, as they should
    }
}

/**
 * One thread's share of a row: columns tid, tid + CE_THREADS, ... . 16-bit rows that are 16-byte aligned are read
 * 8 values per load, the pack's maximum folded into the running one first (one rescale per pack, not per value).
 */
template <typename T, typename E>
__device__ __forceinline__ void ce_row_share(const T* lr, i64 vocab, bool packed, int tid, E& m, E& s) {
    m = neg_inf<E>();
    s = 0;
    constexpr int N = Pack16<T>::N;
    const i64 packs = packed ? vocab / N : 0;
    for (i64 p = tid; p < packs; p += CE_THREADS) {
        const Pack16<T> v = load_pack(lr, p);
        E x[N], pm = neg_inf<E>();
#pragma unroll
        for (int j = 0; j < N; j++) {
            x[j] = Widen<E>::from(v.v[j]);
            pm = x[j] > pm ? x[j] : pm;
        }
        if (pm > m) {
            s *= math_exp(m - pm);
            m = pm;
        }
        if (m != neg_inf<E>())
#pragma unroll
            for (int j = 0; j < N; j++) s += math_exp(x[j] - m); // NaN stays NaN
    }
    for (i64 c = packs * N + tid; c < vocab; c += CE_THREADS) ce_add(load<E>(lr, c), m, s);
}

/**
 * lse_i = log sum_c exp(logits_ic); loss_i = lse_i - logits_i,label_i, or 0 where label_i == ignore. One block of
 * CE_THREADS threads per row (grid-stride over rows); each thread streams a strided share of the vocabulary with
 * an online max (per element in CeElement's type), and the shares merge in a fixed tree in the accumulator type.
 */
template <typename T, typename S>
__global__ void cross_entropy_forward_kernel(const T* logits, const int* labels, int ignore, S* loss, S* lse,
                                             i64 n, i64 vocab) {
    typedef typename Promote<T, S>::type A;
    typedef typename CeElement<T, A>::type E;
    __shared__ A maxes[CE_THREADS];
    __shared__ A sums[CE_THREADS];
    const int tid = threadIdx.x;
    const bool packed = aligned16(logits) && vocab % Pack16<T>::N == 0; // then every row is aligned
    for (i64 row = blockIdx.x; row < n; row += gridDim.x) {
        const T* lr = logits + row * vocab;
        E m, s;
        ce_row_share(lr, vocab, packed, tid, m, s);
        maxes[tid] = m;
        sums[tid] = s;
        __syncthreads();
        for (int stride = CE_THREADS / 2; stride > 0; stride >>= 1) {
            if (tid < stride) merge_softmax(maxes[tid], sums[tid], maxes[tid + stride], sums[tid + stride]);
            __syncthreads();
        }
        if (tid == 0) {
            const A l = maxes[0] + math_log(sums[0]);
            store(lse, row, l);
            const int y = labels[row];
            store(loss, row, y == ignore ? A(0) : l - load<A>(lr, y));
        }
        __syncthreads();
    }
}

/**
 * dLogits_ic = scale * (exp(logits_ic - lse_i) - [c == label_i]), 0 on ignored rows; dLogits may be logits. Rows on
 * grid y (grid-stride), columns on grid x, 16 bytes per thread and step where rows are aligned.
 */
template <typename T, typename S>
__global__ void cross_entropy_backward_kernel(const T* logits, const int* labels, const S* lse, int ignore,
                                              double scale, T* dLogits, i64 n, i64 vocab) {
    typedef typename Promote<T, S>::type A;
    typedef typename CeElement<T, A>::type E;
    constexpr int N = Pack16<T>::N;
    const bool packed = aligned16(logits) && aligned16(dLogits) && vocab % N == 0;
    const i64 packs = packed ? vocab / N : 0;
    const i64 first = (i64) blockIdx.x * blockDim.x + threadIdx.x, stride = (i64) gridDim.x * blockDim.x;
    for (i64 row = blockIdx.y; row < n; row += gridDim.y) {
        const int y = labels[row];
        const bool skip = y == ignore;
        const E sc = (E) scale, l = skip ? E(0) : (E) load<A>(lse, row);
        const T* lr = logits + row * vocab;
        T* dr = dLogits + row * vocab;
        for (i64 p = first; p < packs; p += stride) {
            const Pack16<T> v = load_pack(lr, p);
            Pack16<T> d;
#pragma unroll
            for (int j = 0; j < N; j++) {
                E g = skip ? E(0) : sc * math_exp(Widen<E>::from(v.v[j]) - l);
                if (!skip && p * N + j == y) g -= sc;
                d.v[j] = Narrow<T>::from(g);
            }
            store_pack(dr, p, d);
        }
        for (i64 c = packs * N + first; c < vocab; c += stride) {
            E g = skip ? E(0) : sc * math_exp(load<E>(lr, c) - l);
            if (!skip && c == y) g -= sc;
            store(dr, c, g);
        }
    }
}
