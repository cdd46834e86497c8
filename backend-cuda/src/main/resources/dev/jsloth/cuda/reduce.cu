// Deterministic reductions: every sum runs in a fixed order that depends on the sizes only, in double.
#include "common.cuh"

/**
 * Column sums of x [rows, cols] over one chunk of rows: block (32, 8) covers 32 columns of chunk blockIdx.y
 * (rows [chunk*rowsPerChunk, ...)); partial[chunk*cols + j] receives the chunk's sum of column j.
 */
template <typename T>
__global__ void column_partial_sums_kernel(const T* x, i64 rows, i64 cols, i64 rowsPerChunk, double* partial) {
    __shared__ double part[8][33];
    const i64 j = (i64) blockIdx.x * 32 + threadIdx.x;
    const i64 chunk = blockIdx.y;
    const i64 r0 = chunk * rowsPerChunk;
    const i64 r1 = smaller(rows, r0 + rowsPerChunk);
    double acc = 0;
    if (j < cols)
        for (i64 r = r0 + threadIdx.y; r < r1; r += 8) acc += f64_of(x[r * cols + j]);
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && j < cols) {
        double s = 0;
        for (int t = 0; t < 8; t++) s += part[t][threadIdx.x];
        partial[chunk * cols + j] = s;
    }
}

/** out[j] = sum_c partial[c*cols + j] (+ out[j] when accumulate), summed in chunk order. */
template <typename T>
__global__ void reduce_partials_kernel(const double* partial, i64 chunks, i64 cols, T* out, int accumulate) {
    JSLOTH_GRID_STRIDE(j, cols) {
        double s = 0;
        for (i64 c = 0; c < chunks; c++) s += partial[c * cols + j];
        if (accumulate) s += f64_of(out[j]);
        store(out, j, s);
    }
}

/** partial[block] = sum of x[i]^2 over the block's grid-stride share of [0, n), in double. */
template <typename T>
__global__ void square_partial_sums_kernel(const T* x, i64 n, double* partial) {
    __shared__ double scratch[32];
    double acc = 0;
    JSLOTH_GRID_STRIDE(i, n) {
        const double v = f64_of(x[i]);
        acc += v * v;
    }
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}
