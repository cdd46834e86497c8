#!/usr/bin/env bash
# Compares jsloth's F32 GEMM with numpy's matmul (OpenBLAS) on the same sizes, thread count and machine, in one run.
# usage: tools/bench/gemm-vs-openblas.sh [THREADS] [ROUNDS]   (defaults: all cores, 3 rounds)
# Each round runs jsloth's `bench --gemm` (median of 9 timed products after warm-up, in one process) and then numpy's
# (the same, in one process) back to back, so each pair sees the machine in the same state; a shared VM's speed can
# move by 2x within minutes. Printed per size: the median over the rounds of each side's GFLOP/s and of the per-round
# ratios.
# numpy side: OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are unset for it alone (they force an older kernel on this
# machine); threadpoolctl reports which OpenBLAS kernel ran.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
T="${1:-$(nproc)}"
ROUNDS="${2:-3}"
SIZES="2048x2048x2048 4096x16x2048 16x4096x2048 4096x2048x16"
./jsloth build >/dev/null 2>&1 || true
printf '%-16s %12s %12s %8s   %s\n' "MxNxK" "jsloth GF/s" "numpy GF/s" "ratio" "per round (jsloth/numpy)"
for s in $SIZES; do
  IFS=x read -r M N K <<<"$s"
  pairs=()
  for ((r = 0; r < ROUNDS; r++)); do
    js=$(./jsloth bench --gemm "$s" --threads "$T" --repeats 9 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["gflops"])')
    np=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS="$T" OMP_NUM_THREADS="$T" python3 - "$M" "$N" "$K" <<'PY'
import sys, time, numpy as np
m, n, k = map(int, sys.argv[1:4])
a = np.random.rand(m, k).astype(np.float32); b = np.random.rand(k, n).astype(np.float32)
for _ in range(3): a @ b
t = []
for _ in range(9):
    t0 = time.perf_counter(); a @ b; t.append(time.perf_counter() - t0)
t.sort(); print(2.0 * m * n * k / t[len(t) // 2] / 1e9)
try:
    from threadpoolctl import threadpool_info
    print([(i.get("internal_api"), i.get("architecture"), i.get("num_threads")) for i in threadpool_info()], file=sys.stderr)
except Exception:
    pass
PY
)
    pairs+=("$js:$np")
  done
  python3 - "$s" "${pairs[@]}" <<'PY'
import statistics, sys
size, pairs = sys.argv[1], [tuple(map(float, p.split(":"))) for p in sys.argv[2:]]
js = statistics.median(p[0] for p in pairs)
np_ = statistics.median(p[1] for p in pairs)
ratio = statistics.median(p[0] / p[1] for p in pairs)
rounds = " ".join("%.1f/%.1f" % p for p in pairs)
print("%-16s %12.1f %12.1f %8.2f   %s" % (size, js, np_, ratio, rounds))
PY
done
