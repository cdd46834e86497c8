/*
 * Shared definitions of every jsloth OpenCL program.
 *
 * The host builds each program twice: with REAL_IS_DOUBLE (compute in double; only on devices with fp64) and
 * without (compute in float). `real` is the compute type. Tensors are passed to kernels as three arguments --
 * the buffer, an element offset (row views share their parent's buffer) and the storage type code -- declared
 * with TENSOR(name) and accessed with LD/ST, which widen on load and round (to nearest even) on store.
 * NF4 operands (GEMM, copy) carry a fourth argument, the float block scales: QTENSOR / LDQ.
 */
#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double real;
#define REAL_MAX DBL_MAX
#else
typedef float real;
#define REAL_MAX FLT_MAX
#endif

/* storage type codes: the order of dev.jsloth.api.DType */
#define DT_F32 0
#define DT_F64 1
#define DT_BF16 2
#define DT_F16 3
#define DT_I32 4
#define DT_NF4 5

#define NF4_BLOCK 64

/* a*b + c: fused where the device says fused is fast, else a plain multiply-add (never a slow emulated fma) */
#if defined(REAL_IS_DOUBLE) && defined(FP_FAST_FMA)
#define MULADD(a, b, c) fma((a), (b), (c))
#elif !defined(REAL_IS_DOUBLE) && defined(FP_FAST_FMAF)
#define MULADD(a, b, c) fma((a), (b), (c))
#else
#define MULADD(a, b, c) ((a) * (b) + (c))
#endif

#define TENSOR(n) global uchar *n, long n##_off, int n##_dt
#define QTENSOR(n) TENSOR(n), global const float *n##_sc
#define INTS(n) global const int *n, long n##_off

#define LD(n, i) load_elem(n, n##_off + (long)(i), n##_dt)
#define LDQ(n, i) load_quant(n, n##_off + (long)(i), n##_dt, n##_sc)
#define ST(n, i, v) store_elem(n, n##_off + (long)(i), n##_dt, (v))
#define INT_AT(n, i) (n[n##_off + (long)(i)])

inline float bf16_to_float(ushort h) {
    return as_float(((uint) h) << 16);
}

/* float to bfloat16 bits, round to nearest even; NaN stays NaN (quiet). */
inline ushort float_to_bf16(float f) {
    uint bits = as_uint(f);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return (ushort) ((bits >> 16) | 0x0040u);
    bits += 0x7FFFu + ((bits >> 16) & 1u);
    return (ushort) (bits >> 16);
}

inline real load_elem(global const uchar *p, long i, int dt) {
    switch (dt) {
        case DT_F32: return (real) ((global const float *) p)[i];
#ifdef REAL_IS_DOUBLE
        case DT_F64: return ((global const double *) p)[i];
#endif
        case DT_BF16: return (real) bf16_to_float(((global const ushort *) p)[i]);
        case DT_F16: return (real) vload_half((size_t) i, (global const half *) p);
        default: return (real) NAN;
    }
}

/* Stores v rounded to the storage type: a double is first rounded to float for the 16-bit types, as the CPU
 * reference does. */
inline void store_elem(global uchar *p, long i, int dt, real v) {
    switch (dt) {
        case DT_F32: ((global float *) p)[i] = (float) v; break;
#ifdef REAL_IS_DOUBLE
        case DT_F64: ((global double *) p)[i] = v; break;
#endif
        case DT_BF16: ((global ushort *) p)[i] = float_to_bf16((float) v); break;
        case DT_F16: vstore_half_rte((float) v, (size_t) i, (global half *) p); break;
        default: break;
    }
}

/* NF4: two 4-bit codes per byte, the first element in the high nibble; w = CODE[q] * scale[i / 64] in float. */
inline real load_quant(global const uchar *p, long i, int dt, global const float *scales) {
    if (dt == DT_NF4) {
        uchar b = p[i >> 1];
        int q = (i & 1) ? (b & 0xF) : (b >> 4);
        return (real) (NF4_CODE[q] * scales[i / NF4_BLOCK]);
    }
    return load_elem(p, i, dt);
}
