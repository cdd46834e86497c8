#!/bin/bash
# On the GPU machine: the OpenCL tensor-core tests (narrow, fused, norms) with the GEMM/LoRA properties and HF parity,
# then the tinyllama step profiled with gemm_wgmma_narrow on and off (-Djsloth.opencl.narrowGemm=false).
tar xJf .jre.tar.xz -C /tmp && mkdir -p /tmp/icd && echo /usr/local/nvidia/lib64/libnvidia-opencl.so.1 > /tmp/icd/nvidia.icd
export OCL_ICD_VENDORS=/tmp/icd LD_PRELOAD=/tmp/.jre/lib/libjsig.so
J="/tmp/.jre/bin/java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED"
CP='.gpu/*:.gpu/finetune-tests:.gpu/opencl-tests'
timeout 400 $J -cp "$CP" org.junit.platform.console.ConsoleLauncher --select-class dev.jsloth.opencl.OpenClMatchesCpuTest \
  --select-class dev.jsloth.conformance.GemmProperties --select-class dev.jsloth.conformance.LoraLinearProperties \
  --select-class dev.jsloth.model.HfParityTest --details=tree > $OUT/tests.txt 2>&1
grep -E "tests (successful|failed|skipped)|✘" $OUT/tests.txt | cut -c1-300 | head -30; grep "bf16 opencl 1 - worst" $OUT/tests.txt
for nw in true false; do
  $J -Djsloth.opencl.narrowGemm=$nw -Djsloth.opencl.profile=true -cp '.gpu/*' dev.jsloth.cli.Main bench --backend opencl --shape tinyllama-1.1b --batch 4 --seq 2048 --steps 3 > $OUT/prof-$nw.txt 2>&1
  echo "narrow=$nw $(grep -o '"tok_s.*step_s[^,]*' $OUT/prof-$nw.txt)"; grep "opencl profile" $OUT/prof-$nw.txt | grep -E "n=16|m=16|narrow|split|rmsnorm|device time" | cut -c1-150
done
