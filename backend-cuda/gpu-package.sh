#!/usr/bin/env bash
# Builds jsloth (offline, tests skipped) and fills .gpu/ at the repository root with every jar that
# backend-cuda/gpu-check.sh needs on a GPU machine that has a Java runtime but no Maven: the main jars, the test
# jars of conformance-tests and backend-cuda, and all their test-scope dependencies, with the JUnit Platform
# Console Launcher (standalone jar) instead of the separate JUnit jars it already contains; the CLI's jar and
# dependencies (for `bench`), and finetune's test classes (for HfParityTest). About 26 MB.
#
#   backend-cuda/gpu-package.sh            # JAVA_HOME defaults to /usr/lib/jvm/temurin-25-jdk-amd64
#   MVN_FLAGS="" backend-cuda/gpu-package.sh   # allow Maven to download (default: -o, offline)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export JAVA_HOME="${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}"
mvn_flags="${MVN_FLAGS--o}"

mvn $mvn_flags -q -B install -DskipTests -pl api,backend-cpu-vector,backend-cuda,backend-opencl,conformance-tests,finetune -am

rm -rf .gpu
mkdir -p .gpu
for module in api backend-cpu-vector backend-cuda backend-opencl conformance-tests; do
    cp "$module"/target/jsloth-*.jar .gpu/
done
# The standalone launcher bundles JUnit Jupiter, the Platform, opentest4j and apiguardian: leave those out.
mvn $mvn_flags -q -B dependency:copy-dependencies -pl backend-cuda,backend-opencl,conformance-tests \
    -DincludeScope=test -DoutputDirectory="$root/.gpu" \
    -DexcludeArtifactIds=junit-jupiter,junit-jupiter-api,junit-jupiter-engine,junit-jupiter-params,junit-platform-commons,junit-platform-engine,junit-platform-launcher,opentest4j,apiguardian-api

# The CLI (`dev.jsloth.cli.Main bench ...`) and HfParityTest: finetune's jar and runtime dependencies (less XChart's PDF
# export, 10 MB that nothing here uses), and its test classes as a folder, since HfParityTest reads its fixtures as
# directories (gpu-check.sh puts the folder on the class path and runs HfParityTest by default)
cp finetune/target/jsloth-finetune.jar .gpu/
for j in finetune/target/lib/*.jar; do
    case "$(basename "$j")" in pdfbox-*|fontbox-*) ;; *) [ -f ".gpu/$(basename "$j")" ] || cp "$j" .gpu/ ;; esac
done
cp -r finetune/target/test-classes .gpu/finetune-test-classes

ls -1 .gpu
echo "$(ls .gpu | wc -l) jars, $(du -sh .gpu | cut -f1) in $root/.gpu"
echo "on the GPU machine, from the repository root: bash backend-cuda/gpu-check.sh"
