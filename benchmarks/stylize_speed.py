"""Feed-forward stylization speed: ours (impasto.engine.tiling.run_network) against the plain reference network.

    .venv/bin/python benchmarks/stylize_speed.py [--quick] [--device cuda] [--runs N] [--weights random|reduced]

For each image size it times, in one process on one input photo:
  reference        benchmarks/reference.py: the pytorch/examples network, eager fp32, whole image
  fp32             ours, run_network, no autocast (whole image while it fits the engine's memory budget)
  bf16             ours with bf16 autocast (the engine's default where the CPU has AVX512-BF16/AMX, and on CUDA);
                   instance-norm statistics and the output conv stay fp32
  bf16+compile     the same through torch.compile(dynamic=False), at one fixed shape; the compile (first
                   call) is reported apart and excluded from the latency
  openvino bf16    the engine's CPU runtime (impasto.engine.runtime, CPU only), whole image, at the precision
                   the engine picks (bf16 where the CPU has it and the network measured close enough to fp32,
                   else f32); one converted network with dynamic shapes serves every size
  openvino f32     the same in f32 (up to the fp32 size limit)
  ... 1st call     the first OpenVINO call at a size never seen (the largest size + 16), then its steady
                   median: the cost of a new size (issue 13: at most about 1 s more)
At the tiled size (4096 by default) ours runs in 512 px tiles with whole-image instance-norm statistics.
On a CPU without native bf16 (no AVX512-BF16/AMX) the torch bf16 rows are left out: emulated bf16 is tens of
times slower than fp32 there (20 s against 0.4 s at 256x256 on an AVX2-only EPYC), and the engine runs fp32
on such a CPU; the tiled and compiled rows run in fp32 instead, and OpenVINO runs f32.
Each row gives the median latency (of up to N runs: at the defaults a row stops adding runs once they took
15 s, --max-seconds), the peak memory above the starting level, the speed-up over the reference
and the largest and 99.9th-percentile absolute output difference as % of the reference output's range.

Weights: by default a full-width network (widths 32/64/128, 5 residual blocks, as in the paper) with fixed
random weights (seed 0); the same state dict goes into both implementations. The output differences are
also checked on trained weights (pytorch/examples, reduced to width 16, and every bundled style, on torch bf16
and on OpenVINO) at the goal size. Goal (issue 7): at least 4x the reference at 1024x1024 with the largest
difference under 2% of the range; issue 13's target: OpenVINO at least 10x and at most 0.3 s there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import Any

import common
import numpy as np
import torch
from reference import reference_net

GOAL_SIZE, GOAL_SPEEDUP, GOAL_DIFF_PCT = 1024, 4.0, 2.0
FAST_SPEEDUP, FAST_MEDIAN_S = 10.0, 0.3  # issue 13, OpenVINO at GOAL_SIZE
REDUCED = "weights/style_nets/pytorch_examples_reduced/saved_models_nc16/candy_nc16_b1_e2_1e05_1e10.model"
CONTENT = "content_images/chicago.jpg"


def bundled_styles() -> list[str]:
    """Every style that ships, ours and converted."""
    from impasto.models.store import ModelStore

    return sorted(m.name for m in ModelStore().list("style") if m.bundled)


@dataclasses.dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]  # whole-image sizes (ours runs untiled while the budget allows)
    tiled: int  # the size run in tiles (0: none)
    tile: int
    compile_sizes: tuple[int, ...]
    runs: dict[int, int]  # timed runs per size
    reference_tiled: bool  # also run the reference at the tiled size (slow and memory-hungry)
    tiled_configs: tuple[str, ...]  # which of ours run at the tiled size ("fp32", "bf16")
    fp32_up_to: int  # ours in fp32 only up to this size (the row that shows the plan code costs nothing)
    max_s: float | None  # no further timed run of a row once its timed runs took this long (None: all runs)


# On a 2-core CPU one 4096 run takes one to two minutes (the reference ~60 s and ~11 GB): the tiled path is warmed
# up on a small image with the same tile size (same kernels, so the one-time costs are paid there) and timed
# once, the reference skips 4096 (--reference-tiled adds it) and ours runs on torch in fp32 only up to 1024 when
# a faster path of ours runs beside it. A row stops adding timed runs once they took 15 s (a 2048 reference on
# a CPU without bf16 takes 16-28 s a run): the large sizes then get one or two runs, the count beside each median.
DEFAULT = Plan(sizes=(256, 512, 1024, 2048), tiled=4096, tile=512, compile_sizes=(GOAL_SIZE,),
               runs={256: 7, 512: 5, 1024: 5, 2048: 3, 4096: 1}, reference_tiled=False, tiled_configs=("bf16",),
               fp32_up_to=1024, max_s=15.0)
QUICK = Plan(sizes=(32, 64), tiled=96, tile=48, compile_sizes=(), runs={32: 1, 64: 1, 96: 1},
             reference_tiled=True, tiled_configs=("fp32", "bf16"), fp32_up_to=96, max_s=None)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A full-width state dict with fixed random weights: PyTorch's default initialisation, plus a random
    instance-norm affine so the norms are not the identity map a fresh layer would be."""
    from impasto.nets.johnson import build_johnson

    torch.manual_seed(seed)
    net = build_johnson(widths=(32, 64, 128), res_blocks=5)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if ".in" in f".{name}" and name.endswith("weight"):
                p.uniform_(0.5, 1.5)
            elif ".in" in f".{name}" and name.endswith("bias"):
                p.uniform_(-0.5, 0.5)
    return net.state_dict()


def diff_pct(out: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """Largest and 99.9th-percentile |out - ref| as % of the reference's range (max - min)."""
    d = (out.float() - ref.float()).abs().flatten().numpy()
    rng = float(ref.max() - ref.min()) or 1.0
    k = min(int(len(d) * 0.999), len(d) - 1)
    return 100 * float(d.max()) / rng, 100 * float(np.partition(d, k)[k]) / rng


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--weights", choices=("random", "reduced"), default="random",
                   help="full-width fixed random weights (default) or the reduced pytorch/examples candy net")
    p.add_argument("--reference-tiled", action=argparse.BooleanOptionalAction, default=None,
                   help="also run the reference at the tiled size (default: off; about 2 minutes at 4096 on 2 cores)")
    p.add_argument("--sizes", type=_ints, help="whole-image sizes, e.g. 256,512 (default 256,512,1024,2048)")
    p.add_argument("--tiled", type=int, help="size run in tiles (default 4096; 0: none)")
    p.add_argument("--tiled-configs", type=lambda v: tuple(v.split(",")), help="ours at the tiled size: fp32,bf16")
    p.add_argument("--trained-check", choices=("full", "candy", "none"), default=None,
                   help="bf16 differences on trained weights: the reduced candy and mosaic nets and the four bundled "
                   "nets (full, default), candy only (--quick's default), or none")
    p.add_argument("--compile-at", type=_ints, help="sizes to also run compiled (default 1024; 0: none)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="no further timed run of a row once its runs took this long (default 15; 0: every run; "
                   "--runs alone runs every run)")
    args = p.parse_args(argv)
    with common.quick_threads(args.quick, args.threads):
        return _run(args)


def _run(args: Any) -> int:
    from impasto.device import cpu_has_bf16
    from impasto.engine.engine import Engine, EngineConfig
    from impasto.engine.tiling import RunConfig, run_network
    from impasto.nets.johnson import johnson_from_state

    plan = QUICK if args.quick else DEFAULT
    if args.reference_tiled is not None:
        plan = dataclasses.replace(plan, reference_tiled=args.reference_tiled)
    if args.sizes:
        plan = dataclasses.replace(plan, sizes=args.sizes)
    if args.tiled is not None:
        plan = dataclasses.replace(plan, tiled=args.tiled)
    if args.tiled_configs:
        plan = dataclasses.replace(plan, tiled_configs=args.tiled_configs)
    if args.compile_at:
        plan = dataclasses.replace(plan, compile_sizes=tuple(s for s in args.compile_at if s))
    if args.max_seconds is not None or args.runs:
        plan = dataclasses.replace(plan, max_s=args.max_seconds or None)
    dev = args.device
    device = torch.device(dev)
    load_before = common.load_average()
    if args.weights == "random":
        state, weights = random_state(), "full width 32/64/128, 5 residual blocks, fixed random weights (seed 0)"
    else:
        state = torch.load(common.SHARED / REDUCED, map_location="cpu", weights_only=True)
        weights = f"pytorch/examples candy, reduced width 16 ({REDUCED})"
    ref_net = reference_net(state).to(device)
    ours = johnson_from_state(state).to(device)
    if device.type == "cuda":  # as the engine does on CUDA
        ours = ours.to(memory_format=torch.channels_last)
    # The engine's own budget and tile choices on this device; only precision and tiling vary below.
    engine_cfg = Engine(EngineConfig(device=dev, tile_size=plan.tile)).run_config()
    half = torch.bfloat16 if device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
    half_name = "bf16" if half == torch.bfloat16 else "fp16"
    configs: dict[str, RunConfig] = {
        "fp32": dataclasses.replace(engine_cfg, autocast=None),
        half_name: dataclasses.replace(engine_cfg, autocast=half),
    }

    # emulated bf16 (a CPU without AVX512-BF16/AMX) is not what the engine runs: leave those rows out
    native_half = device.type != "cpu" or cpu_has_bf16()
    if not native_half:
        print("this CPU has no native bf16: the torch bf16 rows are left out (the engine runs fp32 here)")
        plan = dataclasses.replace(plan, tiled_configs=("fp32",))
    compile_name = half_name if native_half else "fp32"
    ov_nets, ov_prepare = _openvino_nets(ours, dev, half_name)

    def run_ref(x: torch.Tensor) -> Any:
        with torch.inference_mode():
            return ref_net(x.to(device)).float().cpu()

    rows: list[dict[str, Any]] = []
    compiles: list[dict[str, Any]] = []
    first_calls: list[dict[str, Any]] = []

    def record(size: int, name: str, tiled: bool, m: dict[str, Any], ref: dict[str, Any] | None) -> None:
        row = {"size": size, "config": name, "tiled": tiled, "median_s": m["median_s"], "all_s": m["all_s"],
               "cpu_s": m["cpu_s"], "runs": len(m["all_s"]), "peak_mib": m["peak_mib"], "speedup_vs_reference": None,
               "max_diff_pct": None, "p999_diff_pct": None}
        if ref is not None:
            row["speedup_vs_reference"] = ref["median_s"] / m["median_s"]
            if name != "reference":
                row["max_diff_pct"], row["p999_diff_pct"] = diff_pct(m["result"], ref["result"])
        rows.append(row)
        _print_row(row)

    print(f"stylize speed on {common.device_name(dev)}; load average {load_before:.1f}; weights: {weights}")
    print(f"{'size':>6} {'config':>14} {'median':>9} {'CPU':>8} {'peak MiB':>9} {'vs ref':>7} {'max diff':>9} "
          f"{'p99.9':>8}")
    for size in [*plan.sizes, *([plan.tiled] if plan.tiled else [])]:
        runs = args.runs or plan.runs.get(size, 3)
        tiled = size == plan.tiled
        x = common.square(CONTENT, size)
        ref = None
        if not tiled or plan.reference_tiled:
            ref = common.measure(lambda x=x: run_ref(x), dev, runs, max_s=plan.max_s)
            record(size, "reference", False, ref, ref)
        for name, cfg in configs.items():
            if tiled and name.replace("fp16", "bf16") not in plan.tiled_configs:  # fp16: CUDA without bf16
                continue
            if not tiled and name == "fp32" and size > plan.fp32_up_to and (native_half or ov_nets):
                continue
            if name == half_name and not native_half:
                continue
            cfg = dataclasses.replace(cfg, force_tiles=tiled)
            warmup = 1
            if tiled:  # the same tile shapes on a 2x2-tile image: one-time costs paid without a full-size run
                run_network(ours, common.square(CONTENT, 2 * plan.tile), cfg)
                common.sync(dev)
                warmup = 0
            m = common.measure(lambda x=x, cfg=cfg: run_network(ours, x, cfg), dev, runs, warmup=warmup,
                               max_s=plan.max_s)
            record(size, name + (" tiled" if tiled else ""), tiled, m, ref)
        for name, fast in ([] if tiled else ov_nets.items()):
            if name == "openvino f32" and size > plan.fp32_up_to and len(ov_nets) > 1:
                continue
            m = common.measure(lambda x=x, fast=fast: run_network(ours, x, configs["fp32"], compiled=fast), dev, runs,
                               max_s=plan.max_s)
            record(size, name, False, m, ref)
        if ov_nets and size == max(plan.sizes):
            first_calls.append(_first_call_rows(ours, ov_nets, configs["fp32"], size + 16, dev, runs, record,
                                                plan.max_s))
        if size in plan.compile_sizes:
            _compiled_row(ours, x, configs[compile_name], f"{compile_name}+compile", size, dev, runs, ref, record,
                          compiles, plan.max_s)
        del x, ref
        # a partial report after each size: a run cut short (a busy machine, a time limit) still leaves figures
        partial = {"complete": False, "machine": common.machine(dev), "weights": weights, "rows": rows,
                   "compile": compiles, "load_average_before_after": [load_before, common.load_average()],
                   "measured": common.stamp()}
        (args.out_dir / "stylize_speed.partial.json").parent.mkdir(parents=True, exist_ok=True)
        (args.out_dir / "stylize_speed.partial.json").write_text(json.dumps(partial, indent=2) + "\n")

    check = args.trained_check or ("candy" if args.quick else "full")
    trained = []
    if check != "none":
        trained = _trained_check(plan, configs["fp32"], configs[half_name] if native_half else None, dev,
                                 check == "candy", half_name)
    goal = _goal(rows, half_name)
    worst = max(trained, key=lambda t: t["max_diff_pct"], default=None)
    if worst is not None and goal["met"] is not None:
        goal["trained_worst"] = worst
        goal["verdict"] += (f"; on trained weights the largest difference reaches {worst['max_diff_pct']:.2f}% "
                            f"({worst['weights']}, p99.9 {worst['p999_diff_pct']:.2f}%)")
    load_after = common.load_average()
    print(goal["verdict"])
    print(goal["fast_verdict"])
    for f in first_calls:
        print(f"{f['config']} first call at {f['size']}x{f['size']}: {f['first_s']:.3f} s, then {f['steady_s']:.3f} s "
              f"(+{f['first_s'] - f['steady_s']:.3f} s); converting or reading the cache took {ov_prepare:.1f} s")
    for t in trained:
        levels = f", {t['max_levels']:.2f} levels of 255 clamped" if "max_levels" in t else ""
        print(f"trained weights {t['weights']} at {t['size']}x{t['size']}, {t['config']} vs {t['against']}: max diff "
              f"{t['max_diff_pct']:.2f}% of range{levels}, p99.9 {t['p999_diff_pct']:.3f}%")
    print(f"load average before/after: {load_before:.1f} / {load_after:.1f} on {common.machine(dev)['cpus']} CPUs")

    report = {
        "complete": True,
        "what": "feed-forward stylization latency and peak memory, ours (run_network) vs the plain reference",
        "machine": common.machine(dev),
        "weights": weights,
        "input": f"{CONTENT} resized to size x size (RGB 0-255)",
        "tile": plan.tile,
        "memory_budget_bytes": engine_cfg.budget,
        "peak_memory": "CUDA: allocator high-water mark; CPU: sampled RSS above the level at the call (lower bound)",
        "diff": "|ours - reference| as % of the reference output's range (max - min), fp32 reference",
        "rows": rows,
        "compile": compiles,
        "openvino_first_call": first_calls,
        "openvino_prepare_s": ov_prepare if ov_nets else None,
        "trained_weights_check": trained,
        "goal": goal,
    }
    common.publish(args.out_dir, "stylize_speed", report, (load_before, load_after), _plot)
    (args.out_dir / "stylize_speed.partial.json").unlink(missing_ok=True)
    return 0


def _compiled_row(ours: Any, x: torch.Tensor, cfg: Any, name: str, size: int, dev: str, runs: int,
                  ref: dict[str, Any] | None, record: Any, compiles: list[dict[str, Any]],
                  max_s: float | None) -> None:
    """torch.compile at one fixed shape; the first call (the compile) is timed apart. A machine without a
    working compiler toolchain gets the error recorded instead of losing the rest of the run."""
    from impasto.engine.tiling import run_network

    compiled = torch.compile(ours, dynamic=False)
    start = time.perf_counter()
    try:
        run_network(ours, x, cfg, compiled=compiled)
        common.sync(dev)
    except Exception as exc:  # inductor/triton missing or broken: report, carry on
        compiles.append({"size": size, "compile_s": None, "error": f"{type(exc).__name__}: {exc}"[:500]})
        print(f"{'':>6} {name:>14} failed to compile: {compiles[-1]['error'][:200]}")
        return
    compiles.append({"size": size, "compile_s": time.perf_counter() - start})
    m = common.measure(lambda: run_network(ours, x, cfg, compiled=compiled), dev, runs, max_s=max_s)
    record(size, name, False, m, ref)
    print(f"{'':>6} {'':>14} (compile, first call at {size}x{size}: {compiles[-1]['compile_s']:.1f} s, "
          "not in the latency)")


def _trained_check(plan: Plan, fp32: Any, half: Any, dev: str, quick: bool, half_name: str) -> list[dict[str, Any]]:
    """Output differences on trained weights: a random net's activations need not look like a trained one's.
    The reduced pytorch/examples nets are compared with the plain reference; the bundled networks with our own
    fp32 run, on torch with autocast (`half`; None: not on this device) and on OpenVINO at the engine's
    precision."""
    from impasto.engine.tiling import run_network
    from impasto.models.store import ModelStore
    from impasto.nets.johnson import johnson_from_state

    size = GOAL_SIZE if GOAL_SIZE in plan.sizes else plan.sizes[-1]
    x = common.square(CONTENT, size)
    out: list[dict[str, Any]] = []
    reduced = ("candy",) if quick else ("candy", "mosaic")
    for name in reduced:
        path = common.SHARED / REDUCED.replace("candy", name)
        if not path.is_file():
            continue
        state = torch.load(path, map_location="cpu", weights_only=True)
        with torch.inference_mode():
            ref = reference_net(state).to(dev)(x.to(dev)).float().cpu()
        label, cfg = (half_name, half) if half is not None else ("fp32", fp32)
        y = run_network(johnson_from_state(state).to(dev), x, cfg)
        mx, p999 = diff_pct(y, ref)
        out.append({"weights": f"pytorch/examples {name}, width 16", "against": "reference fp32", "size": size,
                    "config": label, "max_diff_pct": mx, "p999_diff_pct": p999})
    store = ModelStore()
    for name in () if quick else bundled_styles():
        net, info = store.load(name, dev), store.get(name)
        ref = run_network(net, x, fp32)
        variant = "Engstrom variant" if info.arch == "engstrom" else "pytorch/examples form"
        ys = {half_name: run_network(net, x, half)} if half is not None else {}
        ov = _openvino_nets(net, dev, half_name, info.sha256, both=False)[0]
        for label, fast in ov.items():
            ys[label] = run_network(net, x, fp32, compiled=fast)
        for label, y in ys.items():
            mx, p999 = diff_pct(y, ref)
            levels = float((y.clamp(0, 255) - ref.clamp(0, 255)).abs().max())
            out.append({"weights": f"bundled {name} ({variant})", "against": "ours fp32", "size": size,
                        "config": label, "max_diff_pct": mx, "p999_diff_pct": p999, "max_levels": levels})
    return out


def _openvino_nets(net: Any, dev: str, half_name: str, sha: str | None = None,
                   both: bool = True) -> tuple[dict[str, Any], float]:
    """{'openvino <precision>': net, and 'openvino f32' when `both`} and the seconds it took to convert (or read
    from the cache) and compile them; nothing where OpenVINO does not run (not the CPU, not installed)."""
    from impasto.engine import runtime

    if not dev.startswith("cpu") or runtime.openvino_version() is None:
        return {}, 0.0
    start, nets = time.perf_counter(), {}
    if half_name == "bf16" and runtime.precision_for(torch.bfloat16) == "bf16":
        fast = runtime.prepare(net, "bf16", sha)
        nets[f"openvino {fast.precision}"] = fast
    if both or not nets:
        nets.setdefault("openvino f32", runtime.prepare(net, "f32", sha))
    return nets, time.perf_counter() - start


def _first_call_rows(ours: Any, ov_nets: dict[str, Any], cfg: Any, size: int, dev: str, runs: int,
                     record: Any, max_s: float | None) -> dict[str, Any]:
    """The engine's OpenVINO net at a size it has never seen: the first call, then the steady median (the first
    call was its warm-up)."""
    from impasto.engine.tiling import run_network

    name, fast = next(iter(ov_nets.items()))
    x = common.square(CONTENT, size)
    first = common.measure(lambda: run_network(ours, x, cfg, compiled=fast), dev, 1, warmup=0)
    record(size, f"{name} 1st call", False, first, None)
    steady = common.measure(lambda: run_network(ours, x, cfg, compiled=fast), dev, runs, warmup=0, max_s=max_s)
    record(size, name, False, steady, None)
    return {"config": name, "size": size, "first_s": first["median_s"], "steady_s": steady["median_s"]}


def _goal(rows: list[dict[str, Any]], half: str) -> dict[str, Any]:
    at = [r for r in rows if r["size"] == GOAL_SIZE and r["config"] != "reference"]
    if not at:
        return {"size": GOAL_SIZE, "met": None, "verdict": f"goal: no {GOAL_SIZE}x{GOAL_SIZE} run in this mode",
                "fast_met": None, "fast_verdict": f"issue 13 target: no {GOAL_SIZE}x{GOAL_SIZE} run in this mode"}
    best = max(at, key=lambda r: r["speedup_vs_reference"])
    met = best["speedup_vs_reference"] >= GOAL_SPEEDUP and best["max_diff_pct"] < GOAL_DIFF_PCT
    verdict = (f"goal at {GOAL_SIZE}x{GOAL_SIZE} (>= {GOAL_SPEEDUP:.0f}x the reference, max diff < "
               f"{GOAL_DIFF_PCT:.0f}% of range): {'MET' if met else 'NOT MET'} by {best['config']}: "
               f"{best['speedup_vs_reference']:.2f}x, max diff {best['max_diff_pct']:.2f}%")
    ov = [r for r in at if r["config"].startswith("openvino") and "1st" not in r["config"]]
    fast = max(ov, key=lambda r: r["speedup_vs_reference"], default=None)
    fast_met = fast is not None and fast["speedup_vs_reference"] >= FAST_SPEEDUP and fast["median_s"] <= FAST_MEDIAN_S
    fast_verdict = (f"issue 13 target at {GOAL_SIZE}x{GOAL_SIZE} (OpenVINO >= {FAST_SPEEDUP:.0f}x, "
                    f"<= {FAST_MEDIAN_S} s): " + ("no OpenVINO run" if fast is None else
                       f"{'MET' if fast_met else 'NOT MET'} by {fast['config']}: {fast['speedup_vs_reference']:.2f}x, "
                       f"{fast['median_s']:.3f} s, max diff {fast['max_diff_pct']:.2f}%"))
    return {"size": GOAL_SIZE, "speedup": GOAL_SPEEDUP, "max_diff_pct": GOAL_DIFF_PCT, "best_config": best["config"],
            "best_speedup": best["speedup_vs_reference"], "best_max_diff_pct": best["max_diff_pct"], "met": met,
            "verdict": verdict, "fast_met": fast_met if fast is not None else None, "fast_verdict": fast_verdict}


def _fmt(v: float | None, spec: str, suffix: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


def _print_row(r: dict[str, Any]) -> None:
    print(f"{r['size']:>6} {r['config']:>14} {r['median_s']:>8.3f}s {r['cpu_s']:>7.2f}s {r['peak_mib']:>9.0f} "
          f"{_fmt(r['speedup_vs_reference'], '>6.2f', 'x'):>7} {_fmt(r['max_diff_pct'], '>8.3f', '%'):>9} "
          f"{_fmt(r['p999_diff_pct'], '>7.3f', '%'):>8}")


def _plot(plt: Any, report: dict[str, Any]) -> None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    configs = list(dict.fromkeys(r["config"].removesuffix(" tiled") for r in report["rows"]))
    for name in configs:
        rows = [r for r in report["rows"] if r["config"].removesuffix(" tiled") == name]
        mp = [r["size"] ** 2 / 1e6 for r in rows]
        style = "o--" if name == "reference" else "o-"
        ax1.plot(mp, [r["median_s"] for r in rows], style, label=name)
        ax2.plot(mp, [r["peak_mib"] for r in rows], style, label=name)
    for ax, label in ((ax1, "median latency (s)"), (ax2, "peak memory above start (MiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("megapixels (largest size tiled for ours)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    ax1.legend()
    fig.suptitle(f"Stylization, {common.where(report)}\n"
                 f"{report['weights']}", fontsize=9)


if __name__ == "__main__":
    sys.exit(main())

