#!/usr/bin/env bash
# Builds the attention-kernel harness for Hopper: bench128 and bench64 in OUT_DIR (default .gpu2 at the repository
# root, which .git/info/exclude should ignore), from the working tree's flash_attention.cu ("var") and BASE's ("base",
# default HEAD). Run them on the GPU machine: `./bench128 2 2048 32 8` (an 8B layer), `./bench64 4 2048 32 4`
# (tinyllama's); sdpa_ref.py beside them times PyTorch's SDPA at the same shape for reference. BASE must have the
# working tree's kernel signatures and grids (dK/dV with partials and chunks, forward and dQ grids (heads, batch, query
# tiles): 6397b37 on). Each wgmma kernel is also timed at BASE, for an A/B in one run.
#
#   tools/gpu/attention-kernels/build.sh [BASE] [OUT_DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
here="$root/tools/gpu/attention-kernels"
base="${1:-HEAD}"
out="${2:-$root/.gpu2}"
src="backend-cuda/src/main/resources/dev/jsloth/cuda"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$root/$src/common.cuh" "$work/"
sed '/#include "common.cuh"/d' "$root/$src/flash_attention.cu" > "$work/fa_var.inc"
git -C "$root" show "$base:$src/flash_attention.cu" | sed '/#include "common.cuh"/d' > "$work/fa_base.inc"
cp "$here/bench.cu" "$work/"
mkdir -p "$out"
for d in 128 64; do
    nvcc -DHD=$d -gencode=arch=compute_90a,code=sm_90a -std=c++17 -O3 -I"$work" -o "$out/bench$d" "$work/bench.cu"
done
cp "$here/sdpa_ref.py" "$out/"
echo "built $out/bench128 $out/bench64 (base $base)"
