#!/usr/bin/env bash
# The benchmarks on a CUDA GPU in one go (under 8 minutes on an H100/H200), then one compact table.
#
#   bash benchmarks/gpu.sh [OUT_DIR]      (default: $OUT if set, else docs/benchmarks/gpu)
#   GPU_SH_DRY=1 bash benchmarks/gpu.sh /tmp/x   rehearses the whole script on the CPU with --quick sizes
#
# Needs torch with CUDA, numpy, pillow, safetensors and grpcio in $PYTHON (default .venv/bin/python, else
# python3); matplotlib is optional (plots). The backend is imported from the checkout, not installed.
# Each step has its own time limit, so one slow or failing step cannot eat the others' time; a failed step
# is reported in the table and the script goes on. The card's name is in every JSON and in the table.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-docs/benchmarks/gpu}}
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export PYTHONPATH="$PWD/backend${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT_DIR"

DRY=${GPU_SH_DRY:-0}
if [ "$DRY" = 1 ]; then
  echo "gpu.sh: dry run on the CPU with --quick sizes"
else
"$PY" - <<'EOF' || { echo "gpu.sh: no CUDA device visible to torch; nothing run"; exit 2; }
import torch
assert torch.cuda.is_available()
print(f"gpu.sh: {torch.cuda.get_device_name()} | torch {torch.__version__} | CUDA {torch.version.cuda}")
EOF
nvidia-smi --query-gpu=name,memory.total,utilization.gpu --format=csv,noheader 2>/dev/null || true
fi

declare -A STATUS
step() {  # step NAME LIMIT_S ARGS...: run benchmarks/NAME.py with a time limit, log to OUT_DIR/NAME.log
  local name=$1 limit=$2; shift 2
  if [ "$DRY" = 1 ]; then set -- --quick; fi
  local start=$SECONDS
  echo "== $name (limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$PY" "benchmarks/$name.py" --out-dir "$OUT_DIR" "$@" 2>&1 | tee "$OUT_DIR/$name.log"
  local rc=${PIPESTATUS[0]}
  STATUS[$name]="rc=$rc in $((SECONDS - start))s"
  [ "$rc" = 0 ] || echo "== $name FAILED (rc $rc; 124 = over its limit); see $OUT_DIR/$name.log"
}

# Budgets (s), the sum under 8 minutes: the compile at 1024 and 2048 dominates the first step.
step stylize_speed 200 --device cuda --sizes 256,512,1024,2048 --tiled 4096 --compile-at 1024,2048
step gatys_speed 70 --device cuda
step speed_quality 110 --device cuda --size 512 --iterations 200 --photos 2 --gatys-runs 2
step transport 40
step sr_speed 50 --device cuda

echo; echo "==== summary ($OUT_DIR)"
"$PY" benchmarks/tables.py "$OUT_DIR"
for k in stylize_speed gatys_speed speed_quality transport sr_speed; do echo "  $k: ${STATUS[$k]:-not run}"; done
