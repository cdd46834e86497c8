#!/usr/bin/env bash
# The CPU training step's achieved GFLOP/s against the same machine's F32 GEMM rate (issue 8's "step >= 60% of the GEMM
# rate"). Each round runs `bench --shape ... --vs-gemm 2048x2048x2048` without and with gradient checkpointing: inside
# one process, every measured step is followed by the GEMM for about as long, and the run reports the median of those
# per-step ratios. This VM's speed moves by up to 2x within minutes; pairs a second apart see it in the same state, where
# separate processes (this script's first form) gave per-round ratios from 0.34 to 0.82.
# Printed: every round (step GFLOP/s, GEMM GFLOP/s beside it, ratio), then the medians of each column. Step GFLOP/s
# count model flops (`gflops`: no recomputation, as MFU does); the GC run's last column is its `executed_vs_gemm`, the
# same ratio with the recomputed products counted (as shared/reference/hf_lora_bench.py counts its TFLOP/s).
# usage: tools/bench/step-vs-gemm.sh [ROUNDS] [SHAPE] [BATCH] [SEQ]   (defaults: 3 llama-25m 2 256; all cores)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROUNDS="${1:-3}"; SHAPE="${2:-llama-25m}"; BATCH="${3:-2}"; SEQ="${4:-256}"
./jsloth build >/dev/null 2>&1 || true
fields() { python3 -c "import json,sys; d=json.load(sys.stdin); print(d['gflops'], d['gemm_gflops'], d['step_vs_gemm'], d['executed_vs_gemm'])"; }
rows=()
printf '%-6s %12s %12s %10s %12s %12s %10s %10s\n' round "no-GC GF/s" "GEMM GF/s" "ratio" "GC GF/s" "GEMM GF/s" "ratio" "executed"
for ((r = 1; r <= ROUNDS; r++)); do
  read -r n ng nr _ < <(./jsloth bench --backend cpu --shape "$SHAPE" --batch "$BATCH" --seq "$SEQ" --no-gc --steps 12 \
      --vs-gemm 2048x2048x2048 2>/dev/null | tail -1 | fields)
  read -r g gg gr ge < <(./jsloth bench --backend cpu --shape "$SHAPE" --batch "$BATCH" --seq "$SEQ" --steps 12 \
      --vs-gemm 2048x2048x2048 2>/dev/null | tail -1 | fields)
  rows+=("$n:$ng:$nr:$g:$gg:$gr:$ge")
  python3 -c "v=[$n,$ng,$nr,$g,$gg,$gr,$ge]; print(f'{$r:<6} {v[0]:12.1f} {v[1]:12.1f} {v[2]:10.3f} {v[3]:12.1f} {v[4]:12.1f} {v[5]:10.3f} {v[6]:10.3f}')"
done
python3 - "${rows[@]}" <<'PY'
import statistics, sys
rows = [tuple(map(float, a.split(':'))) for a in sys.argv[1:]]
m = [statistics.median(r[i] for r in rows) for i in range(7)]
print(f"{'median':<6} {m[0]:12.1f} {m[1]:12.1f} {m[2]:10.3f} {m[3]:12.1f} {m[4]:12.1f} {m[5]:10.3f} {m[6]:10.3f}")
PY
