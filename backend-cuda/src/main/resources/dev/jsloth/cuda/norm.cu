// RMSNorm forward and backward. T: activations, their gradients and rstd; W: the weight and its gradient.
// One block (a multiple of 32 threads) per row, rows in a grid-stride loop; sums in a fixed order.
#include "common.cuh"

/** rstd_i = 1/sqrt(mean_j x_ij^2 + eps); y_ij = w_j * (x_ij * rstd_i). x, y [rows, d]. */
template <typename T, typename W>
__global__ void rms_norm_forward_kernel(const T* x, const W* w, double eps, T* y, T* rstd, i64 rows, int d) {
    typedef typename Promote<T, W>::type A;
    __shared__ A scratch[32];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const T* xr = x + row * d;
        T* yr = y + row * d;
        constexpr int N = Pack16<T>::N;
        const bool packed = d % N == 0 && aligned16(x) && aligned16(y); // rows then start 16-byte aligned too
        A ss = 0;
        if (packed) {
            for (int jp = threadIdx.x; jp < d / N; jp += blockDim.x) {
                const Pack16<T> xv = load_pack(xr, jp);
                for (int k = 0; k < N; k++) {
                    const A v = Widen<A>::from(xv.v[k]);
                    ss += v * v;
                }
            }
        } else {
            for (int j = threadIdx.x; j < d; j += blockDim.x) {
                const A v = load<A>(xr, j);
                ss += v * v;
            }
        }
        ss = block_sum(ss, scratch);
        const A r = A(1) / math_sqrt(ss / A(d) + A(eps));
        if (packed) {
            for (int jp = threadIdx.x; jp < d / N; jp += blockDim.x) {
                const Pack16<T> xv = load_pack(xr, jp);
                Pack16<T> yv;
                for (int k = 0; k < N; k++) yv.v[k] = Narrow<T>::from(load<A>(w, jp * N + k) * (Widen<A>::from(xv.v[k]) * r));
                store_pack(yr, jp, yv);
            }
        } else {
            for (int j = threadIdx.x; j < d; j += blockDim.x) store(yr, j, load<A>(w, j) * (load<A>(xr, j) * r));
        }
        if (threadIdx.x == 0) store(rstd, row, r);
    }
}

/**
 * dx_i = rstd_i * (g_i - xhat_i * mean_j(g_ij * xhat_ij)) with g = dy * w, xhat = x * rstd, plus residual_i where
 * residual is non-null (a residual branch's gradient, added before dx is rounded).
 */
template <typename T, typename W>
__global__ void rms_norm_backward_kernel(const T* dy, const T* x, const W* w, const T* rstd, const T* residual, T* dx,
                                         i64 rows, int d) {
    typedef typename Promote<T, W>::type A;
    __shared__ A scratch[32];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const i64 base = row * d;
        const A r = load<A>(rstd, row);
        constexpr int N = Pack16<T>::N;
        const bool packed = d % N == 0 && aligned16(dy) && aligned16(x) && aligned16(dx) && (residual == nullptr || aligned16(residual));
        A dot = 0;
        if (packed) {
            for (int jp = threadIdx.x; jp < d / N; jp += blockDim.x) {
                const Pack16<T> dv = load_pack(dy + base, jp), xv = load_pack(x + base, jp);
                for (int k = 0; k < N; k++)
                    dot += (Widen<A>::from(dv.v[k]) * load<A>(w, jp * N + k)) * (Widen<A>::from(xv.v[k]) * r);
            }
        } else {
            for (int j = threadIdx.x; j < d; j += blockDim.x)
                dot += (load<A>(dy, base + j) * load<A>(w, j)) * (load<A>(x, base + j) * r);
        }
        dot = block_sum(dot, scratch) / A(d);
        if (packed) {
            for (int jp = threadIdx.x; jp < d / N; jp += blockDim.x) {
                const Pack16<T> dv = load_pack(dy + base, jp), xv = load_pack(x + base, jp);
                Pack16<T> res;
                if (residual != nullptr) res = load_pack(residual + base, jp);
                Pack16<T> out;
                for (int k = 0; k < N; k++) {
                    const A g = Widen<A>::from(dv.v[k]) * load<A>(w, jp * N + k);
                    const A xh = Widen<A>::from(xv.v[k]) * r;
                    const A add = residual != nullptr ? Widen<A>::from(res.v[k]) : A(0);
                    out.v[k] = Narrow<T>::from(r * (g - xh * dot) + add);
                }
                store_pack(dx + base, jp, out);
            }
        } else {
            for (int j = threadIdx.x; j < d; j += blockDim.x) {
                const A g = load<A>(dy, base + j) * load<A>(w, j);
                const A xh = load<A>(x, base + j) * r;
                const A add = residual != nullptr ? load<A>(residual, base + j) : A(0);
                store(dx, base + j, r * (g - xh * dot) + add);
            }
        }
    }
}

/**
 * Partial sums for dWeight_j = sum_i dy_ij * x_ij * rstd_i over one chunk of rows, in double; laid out and
 * finished (reduce_partials_kernel) exactly as the column sums of reduce.cu.
 */
template <typename T>
__global__ void rms_norm_weight_partials_kernel(const T* dy, const T* x, const T* rstd, i64 rows, i64 d,
                                                i64 rowsPerChunk, double* partial) {
    __shared__ double part[8][33];
    const i64 j = (i64) blockIdx.x * 32 + threadIdx.x;
    const i64 chunk = blockIdx.y;
    const i64 r0 = chunk * rowsPerChunk;
    const i64 r1 = smaller(rows, r0 + rowsPerChunk);
    double acc = 0;
    if (j < d)
        for (i64 r = r0 + threadIdx.y; r < r1; r += 8)
            acc += f64_of(dy[r * d + j]) * (f64_of(x[r * d + j]) * f64_of(rstd[r]));
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && j < d) {
        double s = 0;
        for (int t = 0; t < 8; t++) s += part[t][threadIdx.x];
        partial[chunk * d + j] = s;
    }
}
