#!/usr/bin/env bash
# Same-run speed comparison on a 2-GPU machine: jsloth's `bench` rows on GPU 0 while Hugging Face transformers +
# PEFT (shared/reference/hf_lora_bench.py, copied into .gpu/) runs the same rows on GPU 1 at the same moment.
# Expects the jars in .gpu/ (backend-cuda/gpu-package.sh plus the finetune jar and its lib/) and a Java 25 runtime
# at /tmp/.jre (or JAVA=...). Results: one JSON line per row in $OUT/jsloth.jsonl and $OUT/hf.jsonl.
#
#   bash tools/gpu/same-run-bench.sh [rows]   rows: "main" (default: the four issue-6 rows + QLoRA) or a file of
#                                             "shape batch seq gc(on|off) [qlora]" lines
#   DROPOUT=0.05 bash tools/gpu/same-run-bench.sh ...   LoRA dropout on both sides (jsloth's --lora-dropout; HF's
#                                             script copied with lora_dropout set, .gpu/hf_lora_bench_dropout.py)
set -uo pipefail
set -f
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
out="${OUT:-$root/.gpu-reports}"
mkdir -p "$out"
java="${JAVA:-/tmp/.jre/bin/java}"
# signal chaining as ./jsloth sets it: the JVM's SIGSEGV handler stays first when native libraries install theirs
jsig="$(dirname "$(dirname "$(readlink -f "$java")")")/lib/libjsig.so"
preload="${LD_PRELOAD:-}"
[ -f "$jsig" ] && preload="$jsig${preload:+:$preload}"   # for the java processes only (not the Python side)
rows=(
    "tinyllama-1.1b 4 2048 on"
    "llama3.2-1b 4 2048 on"
    "llama3.1-8b 2 2048 on"
    "llama3.1-8b 2 2048 off"
    "tinyllama-1.1b 4 2048 on qlora"
)
if [ $# -gt 0 ] && [ "$1" != main ]; then mapfile -t rows < "$1"; fi

hf_rows=""
for r in "${rows[@]}"; do
    read -r shape b s gc q <<<"$r"
    [ -n "${q:-}" ] && continue                      # HF has no NF4 row in the reference script
    g=False; [ "$gc" = on ] && g=True
    hf_rows+="(\"$shape\",$b,$s,$g),"
done
hf_module=hf_lora_bench
if [ -n "${DROPOUT:-}" ]; then
    grep -q 'lora_dropout=0.0' .gpu/hf_lora_bench.py || { echo "same-run-bench: lora_dropout=0.0 not found in .gpu/hf_lora_bench.py" >&2; exit 2; }
    sed "s/lora_dropout=0.0/lora_dropout=$DROPOUT/" .gpu/hf_lora_bench.py > .gpu/hf_lora_bench_dropout.py
    hf_module=hf_lora_bench_dropout
fi
(cd .gpu && CUDA_VISIBLE_DEVICES=1 python3 -c "
import json, torch, transformers, peft, $hf_module as h
print(json.dumps(dict(torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__)), flush=True)
for shape, b, s, gc in [$hf_rows]:
    h.run(shape, b, s, gc)
" > "$out/hf.jsonl" 2> "$out/hf.err") &
hf=$!

for r in "${rows[@]}"; do
    read -r shape b s gc q <<<"$r"
    flags=(--backend cuda --shape "$shape" --batch "$b" --seq "$s" --steps "${STEPS:-8}")
    [ "$gc" = off ] && flags+=(--no-gc)
    [ -n "${q:-}" ] && flags+=(--qlora)
    [ -n "${DROPOUT:-}" ] && flags+=(--lora-dropout "$DROPOUT")
    LD_PRELOAD="$preload" CUDA_VISIBLE_DEVICES=0 "$java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
        ${JSLOTH_JAVA_OPTS:-} -cp '.gpu/*' dev.jsloth.cli.Main bench "${flags[@]}" >> "$out/jsloth.jsonl" 2>> "$out/jsloth.err"
done
wait $hf
echo "== jsloth"; cat "$out/jsloth.jsonl"
echo "== hf"; cat "$out/hf.jsonl"
