#!/usr/bin/env bash
# The benchmarks at their default settings, one after the other, with each one's wall time and the
# total (issue 7: under 10 minutes together on the 2-core development CPU), then the markdown tables.
#
#   bash benchmarks/cpu.sh [OUT_DIR]      (default docs/benchmarks)
#
# Run it on a quiet machine: every figure is named with the load average it ran under.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-docs/benchmarks}
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
mkdir -p "$OUT_DIR"
start_all=$SECONDS
declare -A TOOK
for name in stylize_speed tiled_speed transport gatys_speed speed_quality; do
  start=$SECONDS
  echo "== $name"
  "$PY" "benchmarks/$name.py" --out-dir "$OUT_DIR" 2>&1 | grep -v "UserWarning\|warnings.warn\|No CUDA runtime" \
    | tee "$OUT_DIR/$name.log"
  TOOK[$name]="rc=${PIPESTATUS[0]}, $((SECONDS - start)) s"
done
total=$((SECONDS - start_all))
echo; echo "==== summary ($OUT_DIR)"
"$PY" benchmarks/tables.py "$OUT_DIR"
for name in stylize_speed tiled_speed transport gatys_speed speed_quality; do echo "  $name: ${TOOK[$name]}"; done
echo "  all: $total s (goal: under 600 s)"
