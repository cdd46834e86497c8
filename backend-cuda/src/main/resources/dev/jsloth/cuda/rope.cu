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
    constexpr int N = Pack16<T>::N;
    if (half % N == 0 && aligned16(x) && aligned16(cos) && aligned16(sin)) { // N pairs per thread, 16-byte accesses
        const int packs = half / N;
        JSLOTH_GRID_STRIDE(idx, n * heads * packs) {
            const int ip = (int) (idx % packs);
            const i64 th = idx / packs;
            const int h = (int) (th % heads);
            const i64 t = th / heads;
            const i64 p1 = (t * heads * headDim + (i64) h * headDim) / N + ip, p2 = p1 + packs, pc = t * packs + ip;
            const Pack16<T> x1 = load_pack(x, p1), x2 = load_pack(x, p2), c = load_pack(cos, pc), sn = load_pack(sin, pc);
            Pack16<T> r1, r2;
            for (int k = 0; k < N; k++) {
                const A a1 = Widen<A>::from(x1.v[k]), a2 = Widen<A>::from(x2.v[k]), cv = Widen<A>::from(c.v[k]);
                const A sv = inverse ? -Widen<A>::from(sn.v[k]) : Widen<A>::from(sn.v[k]);
                r1.v[k] = Narrow<T>::from(a1 * cv - a2 * sv);
                r2.v[k] = Narrow<T>::from(a2 * cv + a1 * sv);
            }
            store_pack(x, p1, r1);
            store_pack(x, p2, r2);
        }
        return;
    }
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
