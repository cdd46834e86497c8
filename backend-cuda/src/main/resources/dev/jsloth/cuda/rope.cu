// Rotary position embedding in place, Hugging Face's rotate-half layout.
#include "common.cuh"

/**
 * x [n, heads*headDim]; cos, sin [n, headDim/2]. For each token t, head h and i < headDim/2:
 * x1' = x1*cos - x2*sin, x2' = x2*cos + x1*sin (sin negated when inverse). One thread per (x1, x2) pair.
 */
template <typename T>
__global__ void rope_kernel(T* x, const T* cos, const T* sin, i64 n, int heads, int headDim, int inverse) {
    typedef typename Acc<T>::type A;
    const int half = headDim / 2;
    JSLOTH_GRID_STRIDE(idx, n * heads * half) {
        const int i = (int) (idx % half);
        const i64 th = idx / half;
        const int h = (int) (th % heads);
        const i64 t = th / heads;
        const i64 base = t * heads * headDim + (i64) h * headDim;
        const A x1 = load<A>(x, base + i), x2 = load<A>(x, base + half + i);
        const A c = load<A>(cos, t * half + i);
        const A s = inverse ? -load<A>(sin, t * half + i) : load<A>(sin, t * half + i);
        store(x, base + i, x1 * c - x2 * s);
        store(x, base + half + i, x2 * c + x1 * s);
    }
}
