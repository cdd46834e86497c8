// SwiGLU forward and backward, elementwise.
#include "common.cuh"

template <typename A> __device__ __forceinline__ A sigmoid(A v) { return A(1) / (A(1) + math_exp(-v)); }

/** out = silu(gate) * up, silu(g) = g * sigmoid(g). */
template <typename T>
__global__ void swiglu_forward_kernel(const T* gate, const T* up, T* out, i64 n) {
    typedef typename Acc<T>::type A;
    JSLOTH_GRID_STRIDE(i, n) {
        const A g = load<A>(gate, i);
        store(out, i, g * sigmoid(g) * load<A>(up, i));
    }
}

/** dGate = dOut * up * s * (1 + g*(1 - s)), dUp = dOut * silu(g), s = sigmoid(g). */
template <typename T>
__global__ void swiglu_backward_kernel(const T* dOut, const T* gate, const T* up, T* dGate, T* dUp, i64 n) {
    typedef typename Acc<T>::type A;
    JSLOTH_GRID_STRIDE(i, n) {
        const A d = load<A>(dOut, i), g = load<A>(gate, i), u = load<A>(up, i);
        const A s = sigmoid(g);
        store(dGate, i, d * u * s * (A(1) + g * (A(1) - s)));
        store(dUp, i, d * (g * s));
    }
}
