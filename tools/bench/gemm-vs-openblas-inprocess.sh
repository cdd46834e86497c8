#!/usr/bin/env bash
# jsloth's F32 GEMM against OpenBLAS (numpy's own copy of it) alternating inside one JVM: same operands, same thread
# count, each round timing jsloth / OpenBLAS / OpenBLAS / jsloth or the reverse (benchmarks/.../GemmVsOpenBlas.java).
# gemm-vs-openblas.sh runs the two in separate processes, one after the other; on this VM, whose speed moves by 2x
# within minutes, a round's two processes can meet different machines, while here each round's ratio compares the two
# in the same moments.
# usage: tools/bench/gemm-vs-openblas-inprocess.sh [THREADS] [ROUNDS] [MxNxK[:XY] ...]   (XY: transpositions, e.g. 512x16x512:TN)
#   defaults: all cores, 15 rounds, 2048^3 and the three LoRA shapes. OPENBLAS_LIB=path picks another library.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
T="${1:-$(nproc)}"
ROUNDS="${2:-15}"
if ! [[ $T =~ ^[1-9][0-9]*$ && $ROUNDS =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [THREADS] [ROUNDS] [MxNxK[:XY] ...]   (THREADS and ROUNDS are positive whole numbers; got '$T' '$ROUNDS')" >&2
  exit 2
fi
shift $(( $# < 2 ? $# : 2 ))
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(2048x2048x2048 4096x16x2048 16x4096x2048 4096x2048x16)
LIB="${OPENBLAS_LIB:-$(python3 - <<'PY'
import glob, os
try:
    import numpy
except ImportError:
    print("")
    raise SystemExit(0)
base = os.path.dirname(numpy.__file__)
hits = sorted(glob.glob(os.path.join(base, "..", "numpy.libs", "lib*openblas*.so*")) + glob.glob(os.path.join(base, ".libs", "lib*openblas*.so*")))
print(os.path.realpath(hits[0]) if hits else "")
PY
)}"
if [ -z "$LIB" ] || [ ! -f "$LIB" ]; then
  echo "gemm-vs-openblas-inprocess: numpy's OpenBLAS library not found (set OPENBLAS_LIB=/path/to/libopenblas.so)" >&2
  exit 2
fi
./jsloth build >&2
JAVA_HOME="$(./jsloth java-home)"
echo "OpenBLAS: $LIB" >&2
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset as in gemm-vs-openblas.sh (they force an older kernel here); the worker
# threads go to sleep at once after each call (OPENBLAS_THREAD_TIMEOUT=4), so they do not spin beside jsloth's
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_THREAD_TIMEOUT=4 \
  "$JAVA_HOME/bin/java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -Djsloth.threads="$T" \
  -cp "benchmarks/target/classes:benchmarks/target/lib/*" dev.jsloth.bench.GemmVsOpenBlas "$LIB" "$ROUNDS" "${SIZES[@]}" 2>&1 | { grep -v '^WARNING' || true; }
