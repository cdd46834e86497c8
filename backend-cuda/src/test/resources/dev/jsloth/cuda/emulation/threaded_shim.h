// Host emulation of CUDA blocks with real threads, for CudaKernelEmulationTest: every thread of a block is a
// std::thread, __syncthreads is a block-wide std::barrier, __shfl_down_sync exchanges values through a per-warp
// buffer between two warp-wide barriers, and __shared__ variables (static-size arrays inside kernels) become
// function statics shared by the block's threads (blocks run one after another). Kernels must launch full warps
// when they shuffle, as they do on the GPU. The 16-bit half conversions use PTX and are not emulated.
#pragma once
#include <barrier>
#include <semaphore>
#include <cmath>
#include <cstring>
#include <functional>
#include <math.h>
#include <memory>
#include <thread>
#include <vector>
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __constant__
#define asm(...) ((void) 0)
struct Dim3 {
    unsigned x = 1, y = 1, z = 1;
};
static thread_local Dim3 threadIdx, blockIdx;
static thread_local int emu_linear_tid;
static Dim3 blockDim, gridDim;
static std::barrier<>* emu_block_barrier;
static std::vector<std::unique_ptr<std::barrier<>>> emu_warp_barriers;
static double emu_exchange[32][32];

inline void __syncthreads() { emu_block_barrier->arrive_and_wait(); }
// round-to-nearest float32 arithmetic without contraction (the device's __fmul_rn / __fadd_rn)
inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, 8); return d; }
template <typename X> inline X __shfl_down_sync(unsigned, X v, int offset) {
    const int warp = emu_linear_tid / 32, lane = emu_linear_tid % 32;
    emu_exchange[warp][lane] = (double) v;
    emu_warp_barriers[warp]->arrive_and_wait();
    X r = lane + offset < 32 ? (X) emu_exchange[warp][lane + offset] : v;
    emu_warp_barriers[warp]->arrive_and_wait();
    return r;
}
#define JSLOTH_DYNAMIC_SHARED(type, name) static type name[1 << 18]

/** Worker threads reused for every block (creating threads per block costs far more than the kernels). */
struct EmuPool {
    struct Worker {
        std::thread thread;
        std::binary_semaphore go{0};
    };
    std::vector<std::unique_ptr<Worker>> workers;
    std::counting_semaphore<> done{0};
    const std::function<void(int)>* task = nullptr;
    bool stop = false;

    void ensure(int n) {
        while ((int) workers.size() < n) {
            int id = (int) workers.size();
            workers.push_back(std::make_unique<Worker>());
            Worker* w = workers.back().get();
            w->thread = std::thread([this, id, w] {
                for (;;) {
                    w->go.acquire();
                    if (stop) return;
                    (*task)(id);
                    done.release();
                }
            });
        }
    }

    /** Runs body(0..n-1) on n threads (inline when n == 1) and waits for all. */
    void run(int n, const std::function<void(int)>& body) {
        if (n == 1) {
            body(0);
            return;
        }
        ensure(n);
        task = &body;
        for (int i = 0; i < n; i++) workers[i]->go.release();
        for (int i = 0; i < n; i++) done.acquire();
    }

    ~EmuPool() {
        stop = true;
        for (auto& w : workers) w->go.release();
        for (auto& w : workers) w->thread.join();
    }
};
static EmuPool emu_pool;

/** Runs `body` (which calls one kernel) for every block of `grid`, with `block` threads each. */
inline void emu_launch(Dim3 grid, Dim3 block, const std::function<void()>& body) {
    gridDim = grid;
    blockDim = block;
    const int n = block.x * block.y * block.z;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                std::barrier<> bar(n);
                emu_block_barrier = &bar;
                emu_warp_barriers.clear();
                for (int w = 0; w * 32 < n; w++) emu_warp_barriers.push_back(std::make_unique<std::barrier<>>(std::min(32, n - w * 32)));
                const std::function<void(int)> thread = [&, x, y, z](int t) {
                    threadIdx.x = t % block.x;
                    threadIdx.y = (t / block.x) % block.y;
                    threadIdx.z = t / (block.x * block.y);
                    blockIdx.x = x;
                    blockIdx.y = y;
                    blockIdx.z = z;
                    emu_linear_tid = t;
                    body();
                };
                emu_pool.run(n, thread);
            }
}
