#!/usr/bin/env bash
# The CPU training step's achieved GFLOP/s against the same machine's F32 GEMM rate (issue 8's "step >= 60% of the GEMM
# rate"), in paired rounds: each round runs `bench --shape` (no gradient checkpointing, then with it) and `bench --gemm
# 2048x2048x2048` back to back, so each pair sees the VM in the same state (its speed moves by up to 2x within minutes).
# Printed: every round, then the medians of each column and of the per-round ratios.
# usage: tools/bench/step-vs-gemm.sh [ROUNDS] [SHAPE] [BATCH] [SEQ]   (defaults: 5 llama-25m 2 256; all cores)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROUNDS="${1:-5}"; SHAPE="${2:-llama-25m}"; BATCH="${3:-2}"; SEQ="${4:-256}"
./jsloth build >/dev/null 2>&1 || true
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
rows=()
printf '%-6s %14s %14s %12s %10s %10s\n' round "no-GC GF/s" "GC GF/s" "GEMM GF/s" "no-GC/GEMM" "GC/GEMM"
for ((r = 1; r <= ROUNDS; r++)); do
  nogc=$(./jsloth bench --backend cpu --shape "$SHAPE" --batch "$BATCH" --seq "$SEQ" --no-gc --steps 8 2>/dev/null | field gflops)
  gc=$(./jsloth bench --backend cpu --shape "$SHAPE" --batch "$BATCH" --seq "$SEQ" --steps 8 2>/dev/null | field gflops)
  gemm=$(./jsloth bench --backend cpu --gemm 2048x2048x2048 --repeats 9 2>/dev/null | field gflops)
  rows+=("$nogc:$gc:$gemm")
  python3 -c "n,g,m=$nogc,$gc,$gemm; print(f'{$r:<6} {n:14.1f} {g:14.1f} {m:12.1f} {n/m:10.2f} {g/m:10.2f}')"
done
python3 - "${rows[@]}" <<'PY'
import statistics, sys
rows = [tuple(map(float, a.split(':'))) for a in sys.argv[1:]]
med = lambda xs: statistics.median(xs)
print(f"{'median':<6} {med([r[0] for r in rows]):14.1f} {med([r[1] for r in rows]):14.1f} {med([r[2] for r in rows]):12.1f} "
      f"{med([r[0] / r[2] for r in rows]):10.2f} {med([r[1] / r[2] for r in rows]):10.2f}")
PY
