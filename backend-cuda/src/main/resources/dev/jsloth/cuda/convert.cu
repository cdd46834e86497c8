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
 * dst[i] = NF4[q(first + i)] * scale[(first + i) / 64] in float32, for n elements starting at element `first` of
 * the packed weight (two codes per byte, the even element in the high nibble).
 */
template <typename D>
__global__ void nf4_dequantize_kernel(const unsigned char* packed, const float* scales, i64 first, i64 n, D* dst) {
    JSLOTH_GRID_STRIDE(i, n) {
        const i64 e = first + i;
        const unsigned b = packed[e >> 1];
        const unsigned q = (e & 1) == 0 ? (b >> 4) : (b & 15u);
        store(dst, i, NF4_CODE[q] * scales[e / 64]);
    }
}
