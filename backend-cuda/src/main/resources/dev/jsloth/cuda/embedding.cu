// Embedding gather and its deterministic scatter-add.
#include "common.cuh"

/** out[i, :] = table[ids[i], :] (ids validated by the caller). TT: table type, TO: output type. */
template <typename TT, typename TO>
__global__ void embedding_forward_kernel(const TT* table, const int* ids, TO* out, i64 n, i64 dim) {
    JSLOTH_GRID_STRIDE(idx, n * dim) {
        const i64 i = idx / dim, c = idx - i * dim;
        out[idx] = Narrow<TO>::from(f64_of(table[(i64) ids[i] * dim + c]));
    }
}

/**
 * dTable[ids[i], :] += dOut[i, :] without atomics: the caller groups positions by id (uniqueIds[u] appears at
 * positions[starts[u] .. starts[u+1]) in increasing order), and block x handles whole rows u, adding in
 * position order, so repeated ids always sum in the same order. TO: dOut type, TT: table type.
 */
template <typename TO, typename TT>
__global__ void embedding_backward_kernel(const TO* dOut, const int* uniqueIds, const int* starts,
                                          const int* positions, TT* dTable, i64 uniqueCount, i64 dim) {
    typedef typename Promote<TO, TT>::type A;
    for (i64 u = blockIdx.x; u < uniqueCount; u += gridDim.x) {
        const i64 row = uniqueIds[u];
        for (i64 c = (i64) blockIdx.y * blockDim.x + threadIdx.x; c < dim; c += (i64) gridDim.y * blockDim.x) {
            A acc = load<A>(dTable, row * dim + c);
            for (int p = starts[u]; p < starts[u + 1]; p++) acc += load<A>(dOut, (i64) positions[p] * dim + c);
            store(dTable, row * dim + c, acc);
        }
    }
}
