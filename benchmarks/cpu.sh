#!/usr/bin/env bash
# The benchmarks at their default settings (speed_quality lighter, below), one after the other, with each
# one's wall time and the total (issue 7: under 10 minutes together on the 2-core development CPU), then the markdown tables.
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
# speed_quality's own default (every own style x 4 photos, 60 iterations, 3 runs per curve) takes 15-45 min on
# two cores; here one photo per style and 30 iterations keep the whole under the 10 minutes. docs/benchmarks.md
# section 4 is from a run at the script's defaults.
declare -A ARGS=([speed_quality]="--photos 1 --iterations 30")
for name in stylize_speed tiled_speed transport gatys_speed speed_quality; do
  start=$SECONDS
  echo "== $name"
  "$PY" "benchmarks/$name.py" --out-dir "$OUT_DIR" ${ARGS[$name]:-} 2>&1 | grep -v "UserWarning\|warnings.warn\|No CUDA runtime" \
    | tee "$OUT_DIR/$name.log"
  TOOK[$name]="rc=${PIPESTATUS[0]}, $((SECONDS - start)) s"
done
total=$((SECONDS - start_all))
echo; echo "==== summary ($OUT_DIR)"
"$PY" benchmarks/tables.py "$OUT_DIR"
for name in stylize_speed tiled_speed transport gatys_speed speed_quality; do echo "  $name: ${TOOK[$name]}"; done
echo "  all: $total s (goal: under 600 s)"
