#!/usr/bin/env bash
# Runs the JMH benchmarks (module benchmarks/): GEMM at square and LoRA shapes, each op's forward + backward, and a
# whole LoRA training step of llama-25m. Arguments go to JMH, e.g.
#   tools/bench/jmh.sh GemmBenchmark -p mnk=2048x2048x2048 -jvmArgsAppend -Djsloth.threads=2
#   tools/bench/jmh.sh OpBenchmark
#   tools/bench/jmh.sh LoraStepBenchmark -p batch=2 -p seq=256
#   tools/bench/jmh.sh -l        (list the benchmarks)
# GemmBenchmark rows are printed again as GFLOP/s (2*M*N*K / seconds per op) after JMH's own table.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
./jsloth build >&2   # every module, benchmarks/ included
JAVA_HOME="$(./jsloth java-home)"
RESULT=$(mktemp /tmp/jsloth-jmh.XXXXXX.json)
"$JAVA_HOME/bin/java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
  -cp "benchmarks/target/classes:benchmarks/target/lib/*" org.openjdk.jmh.Main -rf json -rff "$RESULT" "$@"
[ "${1:-}" = "-l" ] || [ ! -s "$RESULT" ] || python3 - "$RESULT" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
gemm = [r for r in rows if r["benchmark"].endswith("GemmBenchmark.gemm")]
if gemm:
    print("\nGEMM GFLOP/s (from the JMH scores above)")
    for r in gemm:
        p = r["params"]; m, n, k = map(int, p["mnk"].split("x"))
        ms = r["primaryMetric"]["score"]  # ms/op
        print("  %-16s transB=%-5s %8.1f GFLOP/s" % (p["mnk"], p["transB"], 2.0 * m * n * k / (ms / 1e3) / 1e9))
PY
