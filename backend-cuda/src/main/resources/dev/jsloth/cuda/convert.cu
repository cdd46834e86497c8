// Element type conversion and NF4 dequantization.
#include "common.cuh"

/** dst = src converted, through double: widening is exact, narrowing rounds to nearest even (16-bit via float). */
template <typename S, typename D>
__global__ void convert_kernel(const S* src, D* dst, i64 n) {
    JSLOTH_GRID_STRIDE(i, n) dst[i] = Narrow<D>::from(f64_of(src[i]));
}

/** The NF4 code table, bitsandbytes' values (identical to dev.jsloth.api.quant.Nf4.CODE). */
__constant__ float NF4_CODE[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

/**
 * The scale of 64-block b: scales[b], or, where the scales are kept double-quantized (codes not null),
 * table[codes[b]] * nested[b / 256] + offset with the product and then the sum rounded to float32, exactly as the
 * host reconstructs them (dev.jsloth.api.quant.Nf4Scales.values(); no fused multiply-add).
 */
__device__ __forceinline__ float nf4_block_scale(const float* scales, const unsigned char* codes, const float* table,
                                                 const float* nested, float offset, i64 b) {
    if (codes == nullptr) return scales[b];
    return __fadd_rn(__fmul_rn(table[codes[b]], nested[b >> 8]), offset);
}

/**
 * dst[i] = NF4[q(first + i)] * scale[(first + i) / 64] in float32, for n elements starting at element `first` of
 * the packed weight (two codes per byte, the even element in the high nibble); the scales as nf4_block_scale reads
 * them. Where `first` is a multiple of 32 and the packed bytes and dst are 16-byte aligned (a whole weight, or whole
 * rows of one), a thread takes 16 packed bytes (32 codes, one scale) and writes them as 16-byte packs; the code
 * tables are read from shared memory, where 32 threads looking up different codes are served at once (from constant
 * memory the differing lookups of a warp are served one after another). The elements left, and any other slice, one
 * a thread.
 */
template <typename D>
__global__ void nf4_dequantize_kernel(const unsigned char* packed, const float* scales, const unsigned char* scale_codes,
                                      const float* scale_table, const float* nested, float offset, i64 first, i64 n,
                                      D* dst) {
    __shared__ float code[16];
    __shared__ float table[256];
    if (threadIdx.x < 16) code[threadIdx.x] = NF4_CODE[threadIdx.x];
    if (scale_codes != nullptr)
        for (int i = threadIdx.x; i < 256; i += blockDim.x) table[i] = scale_table[i];
    __syncthreads();
    constexpr int N = Pack16<D>::N;
    const bool whole = (first & 31) == 0 && aligned16(dst) && aligned16(packed + (first >> 1));
    const i64 groups = whole ? n / 32 : 0;
    JSLOTH_GRID_STRIDE(g, groups) {
        const i64 e0 = first + g * 32;
        const Pack16<unsigned> words = load_pack(reinterpret_cast<const unsigned*>(packed + (e0 >> 1)), 0);
        // 32 codes from a multiple of 32: one block of 64
        const float s = nf4_block_scale(scales, scale_codes, table, nested, offset, e0 >> 6);
        Pack16<D> out;
        int k = 0;
        i64 pack = g * (32 / N);
#pragma unroll
        for (int w = 0; w < 4; w++) {
#pragma unroll
            for (int b = 0; b < 4; b++) { // byte b of word w (little-endian): packed byte 4w + b, elements 2(4w + b) and +1
                const unsigned byte = (words.v[w] >> (8 * b)) & 255u;
                out.v[k++] = Narrow<D>::from(code[byte >> 4] * s);
                out.v[k++] = Narrow<D>::from(code[byte & 15u] * s);
                if (k == N) {
                    store_pack(dst, pack++, out);
                    k = 0;
                }
            }
        }
    }
    JSLOTH_GRID_STRIDE(j, n - groups * 32) {
        const i64 i = groups * 32 + j, e = first + i;
        const unsigned b = packed[e >> 1];
        const unsigned q = (e & 1) == 0 ? (b >> 4) : (b & 15u);
        store(dst, i, code[q] * nf4_block_scale(scales, scale_codes, table, nested, offset, e / 64));
    }
}

/**
 * LoRA's F32 factors and rank-r products for the 16-bit GEMM (LowRankSplit.java): each value v as three bf16 values,
 * hi = bf16(v), mid = bf16(v - hi), lo = bf16(v - hi - mid) (24 significant bits between them, F32's). Writes `parts`
 * copies of the stored rows x cols matrix, copy p the hi, mid or lo values as the two bits p of `select` say (0, 1, 2),
 * one after the other (part p at p * rows * cols) or, side_by_side, each row's copies in turn (row r, part p at
 * (r * parts + p) * cols).
 */
template <typename S>
__global__ void lowrank_split_kernel(const S* src, i64 rows, i64 cols, int parts, int select, int side_by_side, bf16_t* dst) {
    const i64 n = rows * cols;
    JSLOTH_GRID_STRIDE(i, n) {
        const float v = f32_of(src[i]);
        const bf16_t hi = bf16_of(v);
        const float rest = isinf(f32_of(hi)) ? 0.f : v - f32_of(hi); // an infinite v (or one rounding to it) is hi alone
        const bf16_t mid = bf16_of(rest);
        const bf16_t lo = bf16_of(rest - f32_of(mid));
        const i64 r = i / cols, c = i - r * cols;
        for (int p = 0; p < parts; p++) {
            const i64 at = side_by_side ? (r * parts + p) * cols + c : p * n + i;
            const int which = (select >> (2 * p)) & 3;
            dst[at] = which == 0 ? hi : which == 1 ? mid : lo;
        }
    }
}

/**
 * c = the sum of `parts` F32 partial products (+ beta * c): a product whose F32 operand was split into hi, mid and lo
 * rows or columns (LowRankSplit.java), its parts stacked (part p at p * rows * cols) or side by side (row r's part p at
 * (r * parts + p) * cols); c dense rows x cols of type T (beta 0: c is not read).
 */
template <typename T>
__global__ void lowrank_fold_kernel(const float* partials, i64 rows, i64 cols, int parts, int side_by_side, double beta, T* c) {
    const i64 n = rows * cols;
    JSLOTH_GRID_STRIDE(i, n) {
        const i64 r = i / cols, col = i - r * cols;
        float v = 0;
        for (int p = parts - 1; p >= 0; p--) v += partials[side_by_side ? (r * parts + p) * cols + col : p * n + i]; // small parts first
        if (beta != 0) v += (float) beta * f32_of(c[i]);
        c[i] = Narrow<T>::from(v);
    }
}
