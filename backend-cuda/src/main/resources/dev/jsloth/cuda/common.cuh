// Definitions shared by every jsloth kernel: the storage types, widening on read and rounding on write, maths on
// the accumulator type, and deterministic block reductions.
//
// The sources include no CUDA header, so that NVRTC compiles them without a toolkit include directory; the two
// 16-bit storage types are therefore defined here as plain bit containers (layout-compatible with __nv_bfloat16
// and __half) and converted with integer arithmetic or PTX.
#pragma once

typedef long long i64;

/** bfloat16 storage: the upper 16 bits of a float32. */
struct bf16_t {
    unsigned short bits;
};

/** IEEE binary16 storage. */
struct f16_t {
    unsigned short bits;
};

// ------------------------------------------------------------------ widening (exact)

__device__ __forceinline__ float f32_of(float v) { return v; }
__device__ __forceinline__ float f32_of(double v) { return (float) v; }
__device__ __forceinline__ float f32_of(bf16_t v) { return __uint_as_float(((unsigned) v.bits) << 16); }
__device__ __forceinline__ float f32_of(f16_t v) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.bits));
    return f;
}

__device__ __forceinline__ double f64_of(float v) { return v; }
__device__ __forceinline__ double f64_of(double v) { return v; }
__device__ __forceinline__ double f64_of(bf16_t v) { return f32_of(v); }
__device__ __forceinline__ double f64_of(f16_t v) { return f32_of(v); }

// ------------------------------------------------------------------ rounding (to nearest even)

/** float to bfloat16, round to nearest even; NaN stays a (quiet) NaN. Same bits as the CPU backend. */
__device__ __forceinline__ bf16_t bf16_of(float f) {
    unsigned b = __float_as_uint(f);
    bf16_t r;
    if ((b & 0x7fffffffu) > 0x7f800000u) {
        r.bits = (unsigned short) ((b >> 16) | 0x40u);
        return r;
    }
    b += 0x7fffu + ((b >> 16) & 1u);
    r.bits = (unsigned short) (b >> 16);
    return r;
}

__device__ __forceinline__ f16_t f16_of(float f) {
    f16_t r;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r.bits) : "f"(f));
    return r;
}

/** Widen<A>::from(v): a stored value as the accumulator type A (float or double). */
template <typename A> struct Widen;
template <> struct Widen<float> {
    template <typename T> static __device__ __forceinline__ float from(T v) { return f32_of(v); }
};
template <> struct Widen<double> {
    template <typename T> static __device__ __forceinline__ double from(T v) { return f64_of(v); }
};

/**
 * Narrow<T>::from(v): a computed value rounded to the storage type T. A double goes to a 16-bit type through
 * float, exactly as the CPU backend (and Java's Float.floatToFloat16((float) v)) does.
 */
template <typename T> struct Narrow;
template <> struct Narrow<float> {
    static __device__ __forceinline__ float from(float v) { return v; }
    static __device__ __forceinline__ float from(double v) { return (float) v; }
};
template <> struct Narrow<double> {
    static __device__ __forceinline__ double from(float v) { return v; }
    static __device__ __forceinline__ double from(double v) { return v; }
};
template <> struct Narrow<bf16_t> {
    static __device__ __forceinline__ bf16_t from(float v) { return bf16_of(v); }
    static __device__ __forceinline__ bf16_t from(double v) { return bf16_of((float) v); }
};
template <> struct Narrow<f16_t> {
    static __device__ __forceinline__ f16_t from(float v) { return f16_of(v); }
    static __device__ __forceinline__ f16_t from(double v) { return f16_of((float) v); }
};

template <typename A, typename T> __device__ __forceinline__ A load(const T* p, i64 i) {
    return Widen<A>::from(p[i]);
}

template <typename T, typename A> __device__ __forceinline__ void store(T* p, i64 i, A v) {
    p[i] = Narrow<T>::from(v);
}

// ------------------------------------------------------------------ accumulator types

/** The compute type of two operand types: double if either is double, else float. */
template <typename X, typename Y> struct Promote { typedef float type; };
template <typename Y> struct Promote<double, Y> { typedef double type; };
template <typename X> struct Promote<X, double> { typedef double type; };
template <> struct Promote<double, double> { typedef double type; };

/** The compute type of one storage type: double for double, float otherwise. */
template <typename T> struct Acc { typedef typename Promote<T, T>::type type; };

__device__ __forceinline__ float math_exp(float x) { return expf(x); }
__device__ __forceinline__ double math_exp(double x) { return exp(x); }
__device__ __forceinline__ float math_log(float x) { return logf(x); }
__device__ __forceinline__ double math_log(double x) { return log(x); }
__device__ __forceinline__ float math_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double math_sqrt(double x) { return sqrt(x); }

template <typename A> __device__ __forceinline__ A neg_inf();
template <> __device__ __forceinline__ float neg_inf<float>() { return __int_as_float(0xff800000); }
template <> __device__ __forceinline__ double neg_inf<double>() { return __longlong_as_double(0xfff0000000000000LL); }

// ------------------------------------------------------------------ loops and reductions

/**
 * Declares a kernel's dynamic shared memory (sized at launch). A macro so that the host emulation used by the tests
 * (backend-cuda/src/test/resources/dev/jsloth/cuda/emulation) can give it block-shared host storage instead.
 */
#ifndef JSLOTH_DYNAMIC_SHARED
#define JSLOTH_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

/** The smaller of two values (own helper: NVRTC programs get no standard headers). */
template <typename X> __device__ __forceinline__ X smaller(X a, X b) { return a < b ? a : b; }

/** Grid-stride loop over [0, n) with a 64-bit index. */
#define JSLOTH_GRID_STRIDE(i, n) \
    for (i64 i = (i64) blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64) blockDim.x * gridDim.x)

// ------------------------------------------------------------------ 16-byte packs

/** 16 bytes of T (8 bf16/f16, 4 float, 2 double): the unit of the vectorized elementwise loops. */
template <typename T> struct alignas(16) Pack16 {
    static constexpr int N = 16 / (int) sizeof(T);
    T v[N];
};

__device__ __forceinline__ bool aligned16(const void* p) { return (((unsigned long long) p) & 15u) == 0; }

template <typename T> __device__ __forceinline__ Pack16<T> load_pack(const T* p, i64 pack) {
    return reinterpret_cast<const Pack16<T>*>(p)[pack];
}

template <typename T> __device__ __forceinline__ void store_pack(T* p, i64 pack, const Pack16<T>& v) {
    reinterpret_cast<Pack16<T>*>(p)[pack] = v;
}

/**
 * A grid-stride loop over [0, n) that runs packed(p) for each whole 16-byte pack p (elements [p*N, p*N + N)) when
 * `aligned` (every pointer involved 16-byte aligned), and single(i) for the elements left: one 16-byte load per
 * operand instead of one per element, so a bf16 map reaches the memory bandwidth.
 */
template <typename T, typename Packed, typename Single>
__device__ __forceinline__ void for_each_packed(i64 n, bool aligned, Packed packed, Single single) {
    constexpr int N = Pack16<T>::N;
    const i64 packs = aligned ? n / N : 0;
    JSLOTH_GRID_STRIDE(p, packs) packed(p);
    JSLOTH_GRID_STRIDE(i, n - packs * N) single(packs * N + i);
}

/**
 * Sum of v over a one-dimensional block whose size is a multiple of 32, in a fixed order (so the result does not
 * depend on timing). Every thread of the block must call it; every thread gets the sum. scratch holds 32 values.
 */
template <typename A> __device__ A block_sum(A v, A* scratch) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        const int warps = (blockDim.x + 31) >> 5;
        v = lane < warps ? scratch[lane] : A(0);
        for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
        if (lane == 0) scratch[0] = v;
    }
    __syncthreads();
    const A total = scratch[0];
    __syncthreads();
    return total;
}
