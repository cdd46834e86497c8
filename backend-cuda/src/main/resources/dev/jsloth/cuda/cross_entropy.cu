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

/**
 * lse_i = log sum_c exp(logits_ic); loss_i = lse_i - logits_i,label_i, or 0 where label_i == ignore. One block of
 * CE_THREADS threads per row (grid-stride over rows); each thread streams a strided share of the vocabulary with
 * an online max, and the shares merge in a fixed tree.
 */
#define CE_THREADS 256
template <typename T, typename S>
__global__ void cross_entropy_forward_kernel(const T* logits, const int* labels, int ignore, S* loss, S* lse,
                                             i64 n, i64 vocab) {
    typedef typename Promote<T, S>::type A;
    __shared__ A maxes[CE_THREADS];
    __shared__ A sums[CE_THREADS];
    const int tid = threadIdx.x;
    for (i64 row = blockIdx.x; row < n; row += gridDim.x) {
        const T* lr = logits + row * vocab;
        A m = neg_inf<A>(), s = 0;
        for (i64 c = tid; c < vocab; c += CE_THREADS) {
            const A v = load<A>(lr, c);
            if (v > m) {
                s = s * math_exp(m - v) + A(1);
                m = v;
            } else if (v != neg_inf<A>()) {
                s += math_exp(v - m); // NaN logits make s NaN, as they should
            }
        }
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

/** dLogits_ic = scale * (exp(logits_ic - lse_i) - [c == label_i]), 0 on ignored rows; dLogits may be logits. */
template <typename T, typename S>
__global__ void cross_entropy_backward_kernel(const T* logits, const int* labels, const S* lse, int ignore,
                                              double scale, T* dLogits, i64 n, i64 vocab) {
    typedef typename Promote<T, S>::type A;
    const A sc = (A) scale;
    JSLOTH_GRID_STRIDE(idx, n * vocab) {
        const i64 row = idx / vocab;
        const int y = labels[row];
        A d = 0;
        if (y != ignore) {
            d = sc * math_exp(load<A>(logits, idx) - load<A>(lse, row));
            if (idx - row * vocab == y) d -= sc;
        }
        store(dLogits, idx, d);
    }
}
