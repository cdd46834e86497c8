#!/usr/bin/env bash
# OpenCL against CUDA on one NVIDIA GPU, same lease: the tensor-core tests of the OpenCL backend and HF parity first,
# with the conformance properties on every backend there, then `bench --shape` rows on both backends back to back (bf16:
# the backends' preferred training type there), and with HF=1 HF transformers + PEFT on the first row's shape.
# Expects the jars in .gpu/ (backend-cuda/gpu-package.sh, the finetune jar and its lib/, test classes in
# .gpu/opencl-tests and .gpu/finetune-tests) and a Java 25 runtime at /tmp/.jre (or JAVA=...). NVIDIA's OpenCL driver is
# registered alone (with PoCL also loaded into the JVM the process crashed: NOTES.md, "Second GPU session block").
#
#   bash tools/gpu/opencl-vs-cuda.sh [rows]    rows: "shape batch" lines (default: tinyllama-1.1b 4, llama3.2-1b 4,
#                                              llama3.1-8b 2; seq 2048, GC on)
set -uo pipefail
set -f
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
out="${OUT:-$root/.gpu-reports}"
mkdir -p "$out" /tmp/icd
echo /usr/local/nvidia/lib64/libnvidia-opencl.so.1 > /tmp/icd/nvidia.icd
export OCL_ICD_VENDORS=/tmp/icd
java="${JAVA:-/tmp/.jre/bin/java}"
jsig="$(dirname "$(dirname "$(readlink -f "$java")")")/lib/libjsig.so"
[ -f "$jsig" ] && export LD_PRELOAD="$jsig${LD_PRELOAD:+:$LD_PRELOAD}"
J=("$java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED)
rows=("tinyllama-1.1b 4" "llama3.2-1b 4" "llama3.1-8b 2")
if [ $# -gt 0 ]; then mapfile -t rows < "$1"; fi

timeout 450 "${J[@]}" -cp '.gpu/*:.gpu/finetune-tests:.gpu/opencl-tests' org.junit.platform.console.ConsoleLauncher \
    --select-package dev.jsloth.conformance \
    --select-class dev.jsloth.opencl.OpenClMatchesCpuTest --select-class dev.jsloth.opencl.OpenClBackendTest \
    --select-class dev.jsloth.model.HfParityTest --details=tree --disable-banner > "$out/opencl-tests.txt" 2>&1
grep -aE "tests (successful|failed|skipped|found)" "$out/opencl-tests.txt"
grep -a "✘" "$out/opencl-tests.txt" | cut -c1-400 | head
for g in "4096x4096x4096 --trans-b" "8192x2048x5632"; do
    timeout 60 "${J[@]}" -cp '.gpu/*' dev.jsloth.cli.Main bench --backend opencl --dtype bf16 --gemm $g 2>&1 | grep -a '^{' | tee -a "$out/gemm.jsonl"
done
for r in "${rows[@]}"; do
    read -r shape batch <<<"$r"
    for b in opencl cuda; do
        timeout 180 "${J[@]}" -cp '.gpu/*' dev.jsloth.cli.Main bench --backend "$b" --shape "$shape" --batch "$batch" --seq 2048 --steps 3 \
            2>&1 | grep -a '^{' | tee -a "$out/bench.jsonl"
    done
done
if [ -n "${EXTRA_OPENCL:-}" ]; then # e.g. EXTRA_OPENCL=-Djsloth.opencl.narrowGemm=false: the first row again with it
    read -r shape batch <<<"${rows[0]}"
    timeout 180 "${J[@]}" $EXTRA_OPENCL -cp '.gpu/*' dev.jsloth.cli.Main bench --backend opencl --shape "$shape" --batch "$batch" \
        --seq 2048 --steps 3 2>&1 | grep -a '^{' | sed "s|^{|{\"options\":\"$EXTRA_OPENCL\",|" | tee -a "$out/bench.jsonl"
fi
if [ "${HF:-0}" = 1 ]; then
    read -r shape batch <<<"${rows[0]}"
    (cd .gpu && timeout 300 python3 -c "import hf_lora_bench as h; h.run('$shape', $batch, 2048, True)" 2>&1 | grep -a '^{' | tee -a "$out/bench.jsonl")
fi
