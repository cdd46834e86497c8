#!/bin/bash
# On the GPU machine (see tools/gpu/opencl-vs-cuda.sh for the packing): gemm_wgmma.cl's registers, GEMM rows with the
# overlapped and the serial K loop, the tensor-core / low-rank / parity tests, and a profiled tinyllama step.
tar xJf .jre.tar.xz -C /tmp && mkdir -p /tmp/icd && echo /usr/local/nvidia/lib64/libnvidia-opencl.so.1 > /tmp/icd/nvidia.icd
export OCL_ICD_VENDORS=/tmp/icd LD_PRELOAD=/tmp/.jre/lib/libjsig.so
J="/tmp/.jre/bin/java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED"
CP='.gpu/*:.gpu/finetune-tests:.gpu/opencl-tests'
$J -Djsloth.opencl.buildLog=true -Djsloth.opencl.mmaBuildOptions=-cl-nv-verbose -cp '.gpu/*' dev.jsloth.cli.Main bench --backend opencl --gemm 4096x4096x4096 --trans-b --dtype bf16 > $OUT/buildlog.txt 2>&1
grep -A1 "gemm_wgmma' for" $OUT/buildlog.txt | grep Used | head -4
for o in true false; do
  for g in "4096x4096x4096 --trans-b" "8192x2048x5632" "8192x5632x2048 --trans-b" "8192x2048x2048"; do
    echo "overlap=$o $g: $($J -Djsloth.opencl.wgmmaOverlap=$o -cp '.gpu/*' dev.jsloth.cli.Main bench --backend opencl --gemm $g --dtype bf16 2>&1 | grep -o '"median_s.*')"
  done
done
[ "$TESTS" = 0 ] || { timeout 400 $J -cp "$CP" org.junit.platform.console.ConsoleLauncher --select-class dev.jsloth.opencl.OpenClMatchesCpuTest \
  --select-class dev.jsloth.conformance.GemmProperties --select-class dev.jsloth.conformance.LoraLinearProperties \
  --select-class dev.jsloth.model.HfParityTest --details=tree > $OUT/tests.txt 2>&1
  grep -E "tests (successful|failed|skipped)|✘" $OUT/tests.txt | head -30; grep "bf16 opencl 1 - worst" $OUT/tests.txt; }
$J -Djsloth.opencl.profile=true -cp '.gpu/*' dev.jsloth.cli.Main bench --backend opencl --shape tinyllama-1.1b --batch 4 --seq 2048 --steps 3 $BENCH_ARGS > $OUT/prof.txt 2>&1
grep -o '"tok_s.*peak_bytes[^,]*' $OUT/prof.txt; grep "opencl profile" $OUT/prof.txt | head -30 | cut -c1-150
