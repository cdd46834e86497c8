#!/usr/bin/env bash
# Runs the conformance suite (every kernel on every available backend: CPU and, with a usable GPU, CUDA), the CUDA
# backend's own tests and HfParityTest (where packaged) with the JUnit Platform Console Launcher, from what
# backend-cuda/gpu-package.sh put in .gpu/. Needs no Maven: only a Java 25 runtime with jdk.incubator.vector (default
# /tmp/.jre/bin/java, or JAVA=/path/to/java, else java on the PATH). Run from anywhere. Arguments, if any, replace the
# default selection (both packages and HfParityTest), e.g. --select-class dev.jsloth.cuda.CudaBackendTest to run one
# class only.
#
# It finds NVRTC and cuBLASLt when the dynamic linker does not (CUDA toolkit directories, Python wheels), and
# writes the launcher's XML reports and a log to $OUT if set, else .gpu-reports/. Exit status: the launcher's
# (0 = all passed; tests of an unavailable backend are reported as skipped, with the reason).
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

java="${JAVA:-/tmp/.jre/bin/java}"
[ -x "$java" ] || java="$(command -v java || true)"
[ -n "$java" ] && [ -x "$java" ] || { echo "gpu-check: no Java runtime (set JAVA=/path/to/bin/java)" >&2; exit 2; }
# signal chaining as ./jsloth sets it: the JVM's SIGSEGV handler stays first when native libraries install theirs
jsig="$(dirname "$(dirname "$(readlink -f "$java")")")/lib/libjsig.so"
[ -f "$jsig" ] && export LD_PRELOAD="$jsig${LD_PRELOAD:+:$LD_PRELOAD}"
compgen -G ".gpu/*.jar" >/dev/null || { echo "gpu-check: $root/.gpu has no jars: run backend-cuda/gpu-package.sh first" >&2; exit 2; }
# The modules the jars use (jdeps): a jlinked runtime needs at least these, e.g.
#   jlink --add-modules java.base,java.logging,java.xml,java.sql,java.management,jdk.unsupported,jdk.zipfs,jdk.incubator.vector --output /tmp/.jre
modules="$("$java" --list-modules 2>/dev/null)"
for m in java.logging java.xml jdk.zipfs jdk.incubator.vector; do
    grep -q "^$m@" <<<"$modules" || { echo "gpu-check: the runtime $java lacks module $m (jlink it in)" >&2; exit 2; }
done

reports="${OUT:-$root/.gpu-reports}"
mkdir -p "$reports"
log="$reports/gpu-check.log"

# Directories that hold NVRTC or cuBLASLt when ldconfig does not know them.
candidates=("${CUDA_HOME:-/usr/local/cuda}/lib64" /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib)
for d in /usr/local/cuda-*/lib64 /usr/local/cuda-*/targets/x86_64-linux/lib; do [ -d "$d" ] && candidates+=("$d"); done
if command -v python3 >/dev/null; then
    while IFS= read -r d; do candidates+=("$d"); done < <(python3 - 2>/dev/null <<'PY'
import glob, site, sys
roots = set(site.getsitepackages() + [site.getusersitepackages()] + [p for p in sys.path if p.endswith("-packages")])
for r in sorted(roots):
    for d in sorted(glob.glob(r + "/nvidia/*/lib")):
        print(d)
PY
)
fi
extra=()
for lib in libnvrtc.so libcublasLt.so; do
    ldconfig -p 2>/dev/null | grep -q "$lib\.1[23]" && continue
    for d in "${candidates[@]}"; do
        if compgen -G "$d/$lib.1[23]*" >/dev/null; then extra+=("$d"); break; fi
    done
done
if [ ${#extra[@]} -gt 0 ]; then
    joined="$(IFS=:; echo "${extra[*]}")"
    export JSLOTH_CUDA_LIB_PATH="$joined${JSLOTH_CUDA_LIB_PATH:+:$JSLOTH_CUDA_LIB_PATH}"
    export LD_LIBRARY_PATH="$joined${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

{
    echo "== gpu-check $(date -u +%FT%TZ) on $(hostname)"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    "$java" -version 2>&1 | head -1
    echo "JSLOTH_CUDA_LIB_PATH=${JSLOTH_CUDA_LIB_PATH:-}"
} 2>&1 | tee "$log"

selection=(--select-package dev.jsloth.conformance --select-package dev.jsloth.cuda)
# HfParityTest (the fixtures' Hugging Face goldens on every backend) and LoraDropoutBackendsTest (dropout's masks on
# every backend) where gpu-package.sh put finetune's test classes
extra=()
if [ -d "$root/.gpu/finetune-test-classes" ]; then
    extra=(--class-path "$root/.gpu/finetune-test-classes")
    selection+=(--select-class dev.jsloth.model.HfParityTest --select-class dev.jsloth.model.LoraDropoutBackendsTest)
fi
[ $# -gt 0 ] && selection=("$@")
"$java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -Xss4m \
    -cp "$root/.gpu/*" org.junit.platform.console.ConsoleLauncher execute "${extra[@]}" \
    --disable-banner --disable-ansi-colors --details=tree --fail-if-no-tests \
    "${selection[@]}" \
    --include-classname '^.*(Test|Tests|Properties|Checks)$' \
    --config "jqwik.database=${TMPDIR:-/tmp}/jsloth-gpu-check.jqwik-database" \
    --reports-dir "$reports" 2>&1 | tee -a "$log"
status=${PIPESTATUS[0]}
echo "== gpu-check exit status $status (reports and log in $reports)" | tee -a "$log"
exit "$status"
