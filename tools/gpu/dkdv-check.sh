#!/bin/bash
# On the GPU machine (packing: backend-cuda/gpu-package.sh into .gpu/, the attention harness into .gpu2/, the previous
# backend-cuda jar into .gpuold/): the attention kernels in isolation, the CUDA and parity tests, then 8B steps with the
# previous and the new backend-cuda jar alternating (ROWS="--no-gc" by default; AB=0 skips them).
tar xJf .jre.tar.xz -C /tmp
export LD_PRELOAD=/tmp/.jre/lib/libjsig.so
J="/tmp/.jre/bin/java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED"
[ "$HARNESS" = 0 ] || (cd .gpu2 && ./bench128 2 2048 32 8 && ./bench64 4 2048 32 4) > $OUT/harness.txt 2>&1
[ "$HARNESS" = 0 ] || grep -E "ms|check" $OUT/harness.txt
[ "$TESTS" = 0 ] || { timeout 300 $J -cp '.gpu/*:.gpu/finetune-tests' org.junit.platform.console.ConsoleLauncher \
  --select-class dev.jsloth.cuda.CudaBackendTest --select-class dev.jsloth.model.HfParityTest --details=tree > $OUT/tests.txt 2>&1
  grep -E "tests (successful|failed|skipped)|✘" $OUT/tests.txt | head -30; grep -i "bf16 cuda" $OUT/tests.txt | head -5; }
NEW='.gpu/*'
OLD=$(ls .gpu/*.jar | grep -v 'jsloth-backend-cuda-0.1.0-SNAPSHOT.jar' | tr '\n' ':').gpuold/jsloth-backend-cuda-0.1.0-SNAPSHOT.jar
if [ "$AB" != 0 ]; then
  for i in 1 2; do for v in new old; do
    cp=$NEW; [ $v = old ] && cp=$OLD
    echo "$v ${ROWS:---no-gc} $($J -cp "$cp" dev.jsloth.cli.Main bench --backend cuda --shape ${SHAPE:-llama3.1-8b} --batch ${BATCH:-2} --seq 2048 --steps 8 ${ROWS:---no-gc} 2>&1 | grep -o '"tok_s.*peak_bytes[^,]*')"
  done; done
fi
