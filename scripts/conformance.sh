#!/bin/bash
# Score berth-runtime and runc on the OCI runtime-tools validation suite, side by side.
# The suite (opencontainers/runtime-tools at 260e151, built with `make runtimetest
# validation-executables`) lives outside this repository: point RUNTIME_TOOLS_SRC at it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
: "${RUNTIME_TOOLS_SRC:?set RUNTIME_TOOLS_SRC to a built runtime-tools checkout (commit 260e151)}"
score=${SCORE_SCRIPT:-$here/../shared/conformance/score-runtime-tools.sh}
out=${OUT:-$here/build/conformance}
mkdir -p "$out"
for rt in "$here/.venv/bin/berth-runtime" "$(command -v runc)"; do
  name=$(basename "$rt")
  LOGDIR=$out/logs/$name TEST_TIMEOUT=${TEST_TIMEOUT:-60} "$score" "$rt" | tee "$out/$name.txt"
done
