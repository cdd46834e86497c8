// Times the tensor-core attention kernels of backend-cuda's flash_attention.cu in isolation, with CUDA events, at one
// causal shape (bf16, no packing), and checks bit for bit that the working tree's wgmma kernels ("var") give what an
// earlier commit's mma.sync kernels ("base") give. Built by build.sh (nvcc, here; the GPU machine needs only the driver).
// Usage: bench128 B T Hq Hkv [iters]   (bench64: head dimension 64)
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cmath>
#include <vector>
#include <functional>
#include <cuda_runtime.h>
#ifndef HD
#define HD 128
#endif
#if HD == 128
#define BASE_FWD flash_attention_forward_d128_mt2_kernel
#define BASE_FWD_ROWS 128
#define BASE_DKDV flash_attention_dkdv_d128_kernel
#define BASE_DQ flash_attention_dq_d128_mt2_kernel
#define BASE_DQ_ROWS 128
#define VAR_FWD flash_attention_forward_d128_wgmma_kernel
#define VAR_DKDV_K flash_attention_dkdv_d128_wgmma_kernel
#define VAR_DQ flash_attention_dq_d128_wgmma_kernel
#else
#define BASE_FWD flash_attention_forward_d64_kernel
#define BASE_FWD_ROWS 64
#define BASE_DKDV flash_attention_dkdv_d64_kernel
#define BASE_DQ flash_attention_dq_d64_kernel
#define BASE_DQ_ROWS 64
#define VAR_FWD flash_attention_forward_d64_wgmma_kernel
#define VAR_DKDV_K flash_attention_dkdv_d64_wgmma_kernel
#define VAR_DQ flash_attention_dq_d64_wgmma_kernel
#endif
#include "common.cuh"
namespace base {
#include "fa_base.inc"
}
namespace var {
#include "fa_var.inc"
}

#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("CUDA error %s at %s:%d\n", cudaGetErrorString(e), __FILE__, __LINE__); exit(1); } } while (0)

__global__ void delta_kernel(const bf16_t* dO, const bf16_t* o, float* delta, int B, int T, int H, int D) {
    long row = (long) blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (row >= (long) B * T * H) return;
    float acc = 0;
    for (int c = lane; c < D; c += 32) acc += f32_of(dO[row * D + c]) * f32_of(o[row * D + c]);
    for (int s = 16; s > 0; s >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, s);
    if (lane == 0) { int h = row % H; long bt = row / H; int t = bt % T, b = bt / T; delta[((long) b * H + h) * T + t] = acc; }
}

static int ITERS = 20;
static float timeit(const std::function<void()>& f) {
    for (int i = 0; i < 3; i++) f();
    CK(cudaDeviceSynchronize());
    cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
    cudaEventRecord(a);
    for (int i = 0; i < ITERS; i++) f();
    cudaEventRecord(b); CK(cudaEventSynchronize(b));
    float ms; cudaEventElapsedTime(&ms, a, b);
    CK(cudaGetLastError());
    return ms / ITERS;
}
template <typename K> static void allowShared(K kernel, int bytes) {
    CK(cudaFuncSetAttribute((const void*) kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}
static void compare(const char* what, const void* ref, const void* got, size_t n, bool isFloat) {
    std::vector<unsigned short> a16, b16; std::vector<float> a32, b32;
    size_t diff = 0; double maxd = 0, maxref = 0;
    if (isFloat) { a32.resize(n); b32.resize(n); CK(cudaMemcpy(a32.data(), ref, n * 4, cudaMemcpyDeviceToHost)); CK(cudaMemcpy(b32.data(), got, n * 4, cudaMemcpyDeviceToHost)); }
    else { a16.resize(n); b16.resize(n); CK(cudaMemcpy(a16.data(), ref, n * 2, cudaMemcpyDeviceToHost)); CK(cudaMemcpy(b16.data(), got, n * 2, cudaMemcpyDeviceToHost)); }
    for (size_t i = 0; i < n; i++) {
        float x, y;
        if (isFloat) { x = a32[i]; y = b32[i]; } else { unsigned u = (unsigned) a16[i] << 16, w = (unsigned) b16[i] << 16; memcpy(&x, &u, 4); memcpy(&y, &w, 4); }
        if (memcmp(&x, &y, 4) != 0) { diff++; if (std::isfinite(x)) maxd = fmax(maxd, fabs((double) x - y)); }
        if (std::isfinite(x)) maxref = fmax(maxref, fabs(x));
    }
    printf("  check %-10s %s: %zu of %zu differ, max |diff| %.3g (max |ref| %.3g)\n", what, diff ? "DIFFERS" : "same bits", diff, n, maxd, maxref);
}

int main(int argc, char** argv) {
    const int B = atoi(argv[1]), T = atoi(argv[2]), Hq = atoi(argv[3]), Hkv = atoi(argv[4]), D = HD;
    if (argc > 5) ITERS = atoi(argv[5]);
    const size_t nq = (size_t) B * T * Hq * D, nk = (size_t) B * T * Hkv * D, rows = (size_t) B * Hq * T;
    const float scale = 1.f / sqrtf((float) D);
    const double fwdFlops = 4.0 * B * Hq * (double) T * T * D / 2, dkdvFlops = 2 * fwdFlops, dqFlops = 1.5 * fwdFlops;
    printf("shape B=%d T=%d Hq=%d Hkv=%d D=%d, %d timed launches each\n", B, T, Hq, Hkv, D, ITERS);
    std::vector<unsigned short> h(nq);
    unsigned s = 12345;
    auto fill = [&](bf16_t* dst, size_t n) {
        for (size_t i = 0; i < n; i++) { s = s * 1664525u + 1013904223u; float f = ((s >> 8) * (1.0f / 16777216.0f) - 0.5f) * 3.4641f; unsigned u; memcpy(&u, &f, 4); h[i] = (unsigned short) (u >> 16); }
        CK(cudaMemcpy(dst, h.data(), n * 2, cudaMemcpyHostToDevice));
    };
    bf16_t *q, *k, *v, *dO, *o, *o2, *dq, *dq2, *dk, *dv, *dk2, *dv2; float *lse, *lse2, *delta;
    CK(cudaMalloc(&q, nq * 2)); CK(cudaMalloc(&k, nk * 2)); CK(cudaMalloc(&v, nk * 2)); CK(cudaMalloc(&dO, nq * 2));
    CK(cudaMalloc(&o, nq * 2)); CK(cudaMalloc(&o2, nq * 2)); CK(cudaMalloc(&dq, nq * 2)); CK(cudaMalloc(&dq2, nq * 2));
    CK(cudaMalloc(&dk, nk * 2)); CK(cudaMalloc(&dv, nk * 2)); CK(cudaMalloc(&dk2, nk * 2)); CK(cudaMalloc(&dv2, nk * 2));
    CK(cudaMalloc(&lse, rows * 4)); CK(cudaMalloc(&lse2, rows * 4)); CK(cudaMalloc(&delta, rows * 4));
    fill(q, nq); fill(k, nk); fill(v, nk); fill(dO, nq);
    const int LD = D + 8;
    auto tile = [&](int r) { return r * LD * 2; };
    const int W = 64 * D * 2; // one 64-row swizzled tile
    float t;
    // forward
    const int fwdSmem = tile(BASE_FWD_ROWS + 256) + (BASE_FWD_ROWS + 128) * 4;
    allowShared(base::BASE_FWD<bf16_t>, fwdSmem);
    t = timeit([&] { base::BASE_FWD<bf16_t><<<dim3(Hq, B, (T + BASE_FWD_ROWS - 1) / BASE_FWD_ROWS), 128, fwdSmem>>>(q, k, v, nullptr, scale, o, lse, T, T, Hq, Hkv); });
    printf("fwd   mma.sync                         %8.4f ms  %6.1f TFLOP/s\n", t, fwdFlops / t / 1e9);
    {
        const int sm = 6 * W + 1024 + (128 + 128) * 4;
        auto kern = var::VAR_FWD<bf16_t>; allowShared(kern, sm);
        t = timeit([&] { kern<<<dim3(Hq, B, (T + 127) / 128), 256, sm>>>(q, k, v, nullptr, scale, o2, lse2, T, T, Hq, Hkv); });
        printf("fwd   wgmma                            %8.4f ms  %6.1f TFLOP/s\n", t, fwdFlops / t / 1e9);
        compare("out", o, o2, nq, false); compare("lse", lse, lse2, rows, true);
        auto old = base::VAR_FWD<bf16_t>; allowShared(old, sm); // the base commit's wgmma kernel, for an A/B in one run
        t = timeit([&] { old<<<dim3(Hq, B, (T + 127) / 128), 256, sm>>>(q, k, v, nullptr, scale, o2, lse2, T, T, Hq, Hkv); });
        printf("fwd   wgmma at the base commit         %8.4f ms  %6.1f TFLOP/s\n", t, fwdFlops / t / 1e9);
    }
    delta_kernel<<<(rows + 7) / 8, 256>>>(dO, o, delta, B, T, Hq, D);
    CK(cudaDeviceSynchronize());
    // dK/dV
    const int dkdvSmem = tile(128 + 128) + 4 * 32 * 4 + (64 + 64) * 4;
    allowShared(base::BASE_DKDV<bf16_t>, dkdvSmem);
    t = timeit([&] { base::BASE_DKDV<bf16_t><<<dim3(Hkv, B, (T + 63) / 64), 128, dkdvSmem>>>(dO, q, k, v, nullptr, scale, lse, delta, dk, dv, nullptr, nullptr, T, Hq, Hkv, 1); });
    printf("dkdv  mma.sync                         %8.4f ms  %6.1f TFLOP/s\n", t, dkdvFlops / t / 1e9);
    {
        const int sm = 6 * W + 1024 + (4 * 64 + 2 * 64 + 64) * 4;
        auto kern = var::VAR_DKDV_K<bf16_t>; allowShared(kern, sm);
        t = timeit([&] { kern<<<dim3(Hkv, B, (T + 63) / 64), 128, sm>>>(dO, q, k, v, nullptr, scale, lse, delta, dk2, dv2, nullptr, nullptr, T, Hq, Hkv, 1); });
        printf("dkdv  wgmma                            %8.4f ms  %6.1f TFLOP/s\n", t, dkdvFlops / t / 1e9);
        compare("dk", dk, dk2, nk, false); compare("dv", dv, dv2, nk, false);
        auto old = base::VAR_DKDV_K<bf16_t>; allowShared(old, sm);
        t = timeit([&] { old<<<dim3(Hkv, B, (T + 63) / 64), 128, sm>>>(dO, q, k, v, nullptr, scale, lse, delta, dk2, dv2, nullptr, nullptr, T, Hq, Hkv, 1); });
        printf("dkdv  wgmma at the base commit         %8.4f ms  %6.1f TFLOP/s\n", t, dkdvFlops / t / 1e9);
    }
    // dQ
    const int dqSmem = tile(2 * BASE_DQ_ROWS + 128) + (BASE_DQ_ROWS + 64) * 4;
    allowShared(base::BASE_DQ<bf16_t>, dqSmem);
    t = timeit([&] { base::BASE_DQ<bf16_t><<<dim3(Hq, B, (T + BASE_DQ_ROWS - 1) / BASE_DQ_ROWS), 128, dqSmem>>>(dO, q, k, v, nullptr, scale, lse, delta, dq, T, Hq, Hkv); });
    printf("dq    mma.sync                         %8.4f ms  %6.1f TFLOP/s\n", t, dqFlops / t / 1e9);
    {
        const int sm = 6 * W + 1024 + (64 + 128) * 4;
        auto kern = var::VAR_DQ<bf16_t>; allowShared(kern, sm);
        t = timeit([&] { kern<<<dim3(Hq, B, (T + 63) / 64), 128, sm>>>(dO, q, k, v, nullptr, scale, lse, delta, dq2, T, Hq, Hkv); });
        printf("dq    wgmma                            %8.4f ms  %6.1f TFLOP/s\n", t, dqFlops / t / 1e9);
        compare("dq", dq, dq2, nq, false);
        auto old = base::VAR_DQ<bf16_t>; allowShared(old, sm);
        t = timeit([&] { old<<<dim3(Hq, B, (T + 63) / 64), 128, sm>>>(dO, q, k, v, nullptr, scale, lse, delta, dq2, T, Hq, Hkv); });
        printf("dq    wgmma at the base commit         %8.4f ms  %6.1f TFLOP/s\n", t, dqFlops / t / 1e9);
    }
    printf("done\n");
    return 0;
}
