// SwiGLU forward and backward, elementwise.
#include "common.cuh"

template <typename A> __device__ __forceinline__ A sigmoid(A v) { return A(1) / (A(1) + math_exp(-v)); }

/** out = silu(gate) * up, silu(g) = g * sigmoid(g). */
template <typename T>
__global__ void swiglu_forward_kernel(const T* gate, const T* up, T* out, i64 n) {
    typedef typename Acc<T>::type A;
    auto one = [](A g, A u) { return g * sigmoid(g) * u; };
    for_each_packed<T>(n, aligned16(gate) && aligned16(up) && aligned16(out),
        [&](i64 p) {
            const Pack16<T> g = load_pack(gate, p), u = load_pack(up, p);
            Pack16<T> r;
            for (int k = 0; k < Pack16<T>::N; k++) r.v[k] = Narrow<T>::from(one(Widen<A>::from(g.v[k]), Widen<A>::from(u.v[k])));
            store_pack(out, p, r);
        },
        [&](i64 i) { store(out, i, one(load<A>(gate, i), load<A>(up, i))); });
}

/** dGate = dOut * up * s * (1 + g*(1 - s)), dUp = dOut * silu(g), s = sigmoid(g). */
template <typename T>
__global__ void swiglu_backward_kernel(const T* dOut, const T* gate, const T* up, T* dGate, T* dUp, i64 n) {
    typedef typename Acc<T>::type A;
    auto dg = [](A d, A g, A u, A s) { return d * u * s * (A(1) + g * (A(1) - s)); };
    auto du = [](A d, A g, A s) { return d * (g * s); };
    for_each_packed<T>(n, aligned16(dOut) && aligned16(gate) && aligned16(up) && aligned16(dGate) && aligned16(dUp),
        [&](i64 p) {
            const Pack16<T> d = load_pack(dOut, p), g = load_pack(gate, p), u = load_pack(up, p);
            Pack16<T> rg, ru;
            for (int k = 0; k < Pack16<T>::N; k++) {
                const A dv = Widen<A>::from(d.v[k]), gv = Widen<A>::from(g.v[k]), uv = Widen<A>::from(u.v[k]), s = sigmoid(gv);
                rg.v[k] = Narrow<T>::from(dg(dv, gv, uv, s));
                ru.v[k] = Narrow<T>::from(du(dv, gv, s));
            }
            store_pack(dGate, p, rg);
            store_pack(dUp, p, ru);
        },
        [&](i64 i) {
            const A d = load<A>(dOut, i), g = load<A>(gate, i), u = load<A>(up, i);
            const A s = sigmoid(g);
            store(dGate, i, dg(d, g, u, s));
            store(dUp, i, du(d, g, s));
        });
}
