#!/usr/bin/env bash
# All four benchmarks on a CUDA GPU in one go (under 8 minutes on an H100/H200), then one compact table.
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
step speed_quality 120 --device cuda --size 512 --iterations 200
step transport 60

"$PY" - "$OUT_DIR" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])

def load(name):
    p = out / f"{name}.json"
    return json.loads(p.read_text()) if p.is_file() else None

print("\n==== summary", out)
s = load("stylize_speed")
if s:
    print(f"stylize ({s['machine']['device_name']}; {s['weights']})")
    print(f"  {'size':>5} {'config':>14} {'median s':>9} {'peak MiB':>9} {'vs ref':>7} {'max diff %':>10}")
    for r in s["rows"]:
        vs = "-" if r["speedup_vs_reference"] is None else f"{r['speedup_vs_reference']:.2f}x"
        d = "-" if r["max_diff_pct"] is None else f"{r['max_diff_pct']:.3f}"
        print(f"  {r['size']:>5} {r['config']:>14} {r['median_s']:>9.4f} {r['peak_mib']:>9.0f} {vs:>7} {d:>10}")
    for c in s["compile"]:
        print(f"  compile at {c['size']}: {c['compile_s'] if c['compile_s'] is not None else c.get('error')}")
    print("  " + s["goal"]["verdict"])
g = load("gatys_speed")
if g:
    print(f"gatys s/iteration ({g['machine']['device_name']})")
    for r in g["rows"]:
        print(f"  {r['size']:>5} {r['implementation']:>15} {r['s_per_iteration']:.4f} s  {r['speedup_vs_reference']:.2f}x")
q = load("speed_quality")
if q:
    print(f"speed vs quality ({q['machine']['device_name']}, long side {q['size_long_side']}, {q['iterations']} it)")
    for p in q["pairs"]:
        ff = p["feedforward"]
        line = f"  {p['content'].rsplit('/', 1)[-1]} x {p['style']}: FF {ff['time_s']:.4f} s"
        for init in ("content", "noise"):
            c = p["gatys"][init]
            reach = f"it {c['reach_iteration']} / {c['reach_time_s']:.2f} s" if c["reach_iteration"] is not None else "never"
            line += f" | from {init}: {reach}"
        line += f" | from FF: final/FF loss {p['gatys']['feedforward']['final_loss'] / ff['loss']:.2f}"
        print(line)
t = load("transport")
if t:
    print("transport (server on CPU; medians, s)")
    for size, m in t["medians_s"].items():
        print(f"  {size:>5}: copy {m['memory_copy_s']:.3f}  grpcio {m['grpcio_client_s']:.3f}  "
              f"pure-Python {m['pure_python_client_s']:.3f}")
EOF
for k in stylize_speed gatys_speed speed_quality transport; do echo "  $k: ${STATUS[$k]:-not run}"; done
