// Elementwise maps, row broadcast and the AdamW update. One template parameter: the storage type of every
// operand; arithmetic in Acc<T> (double for double, float otherwise).
#include "common.cuh"

/** out = a + b (out may alias a or b). */
template <typename T>
__global__ void add_kernel(const T* a, const T* b, T* out, i64 n) {
    typedef typename Acc<T>::type A;
    for_each_packed<T>(n, aligned16(a) && aligned16(b) && aligned16(out),
        [&](i64 p) {
            const Pack16<T> x = load_pack(a, p), y = load_pack(b, p);
            Pack16<T> r;
            for (int k = 0; k < Pack16<T>::N; k++) r.v[k] = Narrow<T>::from(Widen<A>::from(x.v[k]) + Widen<A>::from(y.v[k]));
            store_pack(out, p, r);
        },
        [&](i64 i) { store(out, i, load<A>(a, i) + load<A>(b, i)); });
}

/** y += alpha * x. */
template <typename T>
__global__ void axpy_kernel(double alpha, const T* x, T* y, i64 n) {
    typedef typename Acc<T>::type A;
    const A a = (A) alpha;
    JSLOTH_GRID_STRIDE(i, n) store(y, i, load<A>(y, i) + a * load<A>(x, i));
}

/** x *= alpha. */
template <typename T>
__global__ void scale_kernel(T* x, double alpha, i64 n) {
    typedef typename Acc<T>::type A;
    const A a = (A) alpha;
    JSLOTH_GRID_STRIDE(i, n) store(x, i, load<A>(x, i) * a);
}

/**
 * The 24-bit draw of the element whose counter is z = seed + (i + 1) * golden (dev.jsloth.api.ops.Dropout#draw:
 * splitmix64's output, top 24 bits). Its last step, z ^= z >> 31, leaves bits 40..63 as they are, so it is left out.
 */
__device__ __forceinline__ unsigned dropout_draw(unsigned long long z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (unsigned) (z >> 40);
}

#define JSLOTH_GOLDEN 0x9E3779B97F4A7C15ull

/**
 * Dropout's mask: out = x where element i's draw is at least threshold, else 0; out may be x. A thread takes a
 * 16-byte pack and steps the counter by golden from one element to the next (an add instead of a multiply): the
 * hash's two 64-bit multiplies an element are then most of the work, and the pack's loads and stores are 16 bytes.
 */
template <typename T>
__global__ void dropout_mask_kernel(const T* x, T* out, i64 n, unsigned long long seed, unsigned threshold) {
    const T zero = Narrow<T>::from(0.0f);
    for_each_packed<T>(n, aligned16(x) && aligned16(out),
        [&](i64 p) {
            constexpr int N = Pack16<T>::N;
            Pack16<T> v = load_pack(x, p);
            unsigned long long z = seed + (unsigned long long) (p * N + 1) * JSLOTH_GOLDEN;
            for (int k = 0; k < N; k++, z += JSLOTH_GOLDEN)
                if (dropout_draw(z) < threshold) v.v[k] = zero;
            store_pack(out, p, v);
        },
        [&](i64 i) { out[i] = dropout_draw(seed + (unsigned long long) (i + 1) * JSLOTH_GOLDEN) >= threshold ? x[i] : zero; });
}

/** x = value (the double rounded once to T). */
template <typename T>
__global__ void fill_kernel(T* x, double value, i64 n) {
    const T v = Narrow<T>::from(value);
    JSLOTH_GRID_STRIDE(i, n) x[i] = v;
}

/** x[i, :] += bias for x [rows, cols]. */
template <typename T>
__global__ void add_row_vector_kernel(T* x, const T* bias, i64 rows, i64 cols) {
    typedef typename Acc<T>::type A;
    JSLOTH_GRID_STRIDE(i, rows * cols) store(x, i, load<A>(x, i) + load<A>(bias, i % cols));
}

/**
 * One AdamW step, PyTorch's single-tensor operation order; the scalars are prepared on the host in double:
 * decay = 1 - lr*wd, bc2Sqrt = sqrt(1 - beta2^t), stepSize = lr / (1 - beta1^t).
 */
template <typename T>
__global__ void adamw_kernel(T* param, const T* grad, T* m, T* v, i64 n, double decay, double beta2,
                             double oneMinusBeta1, double oneMinusBeta2, double bc2Sqrt, double stepSize, double eps) {
    typedef typename Acc<T>::type A;
    JSLOTH_GRID_STRIDE(i, n) {
        const A g = load<A>(grad, i);
        A p = load<A>(param, i) * (A) decay;
        A mv = load<A>(m, i);
        mv += (g - mv) * (A) oneMinusBeta1;
        const A vv = load<A>(v, i) * (A) beta2 + (A) oneMinusBeta2 * g * g;
        const A denom = math_sqrt(vv) / (A) bc2Sqrt + (A) eps;
        p -= (A) stepSize * mv / denom;
        store(param, i, p);
        store(m, i, mv);
        store(v, i, vv);
    }
}
