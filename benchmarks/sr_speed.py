"""Super-resolution speed: the bundled SRGAN x4 on a 512x512 photo (to 2048x2048), OpenVINO against eager fp32.

    .venv/bin/python benchmarks/sr_speed.py [--quick] [--size N] [--model NAME] [--runs N]

Rows, each a whole-image call (no tiling) in one process on one input:
  eager fp32       the torch module, fp32, no autocast: the reference (issue 13's target: OpenVINO >= 5x)
  eager fp32 channels-last  the same module and input in channels-last layout (CPU): what the engine's torch
                   runtime runs on the CPU (impasto.device.channels_last_pays); on an AVX2 EPYC it avoided
                   a slow NCHW path of oneDNN for SRGAN's last 9x9 convolution (155 s against 7.3 s from 512²)
  openvino <prec>  the engine's CPU runtime (impasto.engine.runtime) at the precision the engine picks: bf16
                   where the CPU has it and the network measured close enough to fp32 there, else f32
  openvino f32     the same in f32
  torch <half>     where OpenVINO does not run (CUDA): the engine's own torch path (run_network with the
                   engine's autocast, fp16 or bf16), against the same eager fp32 module (benchmarks/gpu.sh)
Each row: median latency, peak memory above the start, speed-up over eager fp32, and the largest and
99.9th-percentile difference from eager fp32 in levels of 255 (outputs clamped to 0-255, as the engine does).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import common
import numpy as np
import torch

CONTENT = "content_images/chicago.jpg"
GOAL_SPEEDUP = 5.0  # issue 13: SRGAN x4 from 512x512, OpenVINO against its eager fp32 run


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--size", type=int, default=None, help="input side (default 512; --quick: 48)")
    p.add_argument("--model", default="srgan-x4", help="bundled or imported SR model (default srgan-x4)")
    args = p.parse_args(argv)
    with common.quick_threads(args.quick, args.threads):
        return _run(args)


def _run(args: Any) -> int:
    from impasto.engine import runtime
    from impasto.models.store import ModelStore

    size = args.size or (48 if args.quick else 512)
    runs = args.runs or (1 if args.quick else 3)
    dev = args.device
    load_before = common.load_average()
    store = ModelStore()
    info = store.get(args.model, "sr")
    net = store.load(args.model, dev)
    x = common.square(CONTENT, size)
    print(f"SR speed on {common.device_name(dev)}; load average {load_before:.1f}; {info.name} x{info.scale}, "
          f"{size}x{size} -> {size * info.scale}x{size * info.scale}")

    def eager() -> torch.Tensor:
        with torch.inference_mode():
            return net(x.to(dev)).float().cpu()

    runners: dict[str, Any] = {"eager fp32": eager}
    if dev.startswith("cpu"):
        import copy

        net_cl = copy.deepcopy(net).to(memory_format=torch.channels_last)

        def eager_cl() -> torch.Tensor:
            with torch.inference_mode():
                return net_cl(x.contiguous(memory_format=torch.channels_last)).float()

        runners["eager fp32 channels-last"] = eager_cl
    prepare_s = None
    if dev.startswith("cpu") and runtime.openvino_version() is not None:
        start = time.perf_counter()
        nets = {}
        if runtime.precision_for(torch.bfloat16) == "bf16":
            fast = runtime.prepare(net, "bf16", info.sha256)
            nets[f"openvino {fast.precision}"] = fast
        nets.setdefault("openvino f32", runtime.prepare(net, "f32", info.sha256))
        prepare_s = time.perf_counter() - start
        for name, fast in nets.items():
            runners[name] = lambda fast=fast: fast(x)
    else:
        from impasto.engine.engine import Engine, EngineConfig
        from impasto.engine.tiling import run_network

        cfg = Engine(EngineConfig(device=dev)).run_config()
        if cfg.autocast is not None:
            half = "bf16" if cfg.autocast == torch.bfloat16 else "fp16"
            runners[f"torch {half}"] = lambda: run_network(net, x, cfg)
        else:
            print("OpenVINO does not run here (not the CPU, or not installed) and no autocast: eager only")

    rows: list[dict[str, Any]] = []
    ref: torch.Tensor | None = None
    ref_s = None
    print(f"{'config':>14} {'median':>9} {'CPU':>8} {'peak MiB':>9} {'vs eager':>9} {'max lv':>7} {'p99.9 lv':>9}")
    for name, fn in runners.items():
        m = common.measure(fn, dev, runs)
        y = m.pop("result").clamp(0, 255)
        if ref is None:
            ref, ref_s = y, m["median_s"]
        d = (y - ref).abs().flatten().numpy()
        k = min(int(len(d) * 0.999), len(d) - 1)
        row = {"config": name, **m, "runs": len(m["all_s"]), "speedup_vs_eager": ref_s / m["median_s"],
               "max_levels": float(d.max()), "p999_levels": float(np.partition(d, k)[k])}
        rows.append(row)
        print(f"{name:>14} {row['median_s']:>8.3f}s {row['cpu_s']:>7.2f}s {row['peak_mib']:>9.0f} "
              f"{row['speedup_vs_eager']:>8.2f}x {row['max_levels']:>7.2f} {row['p999_levels']:>9.3f}")
    best = max((r for r in rows if not r["config"].startswith("eager")), key=lambda r: r["speedup_vs_eager"],
               default=None)
    if best is None:
        verdict = "goal: no fast-runtime run"
    else:
        met = best["speedup_vs_eager"] >= GOAL_SPEEDUP
        verdict = (f"goal (the engine's fast path >= {GOAL_SPEEDUP:.0f}x eager fp32 on {info.name} from "
                   f"{size}x{size}): "
                   f"{'MET' if met else 'NOT MET'} by {best['config']}: {best['speedup_vs_eager']:.2f}x")
    if prepare_s is not None:
        print(f"converting (or reading the cache) and compiling: {prepare_s:.1f} s")
    load_after = common.load_average()
    print(verdict)
    print(f"load average before/after: {load_before:.1f} / {load_after:.1f} on {common.machine(dev)['cpus']} CPUs")
    report = {
        "what": "SR latency, whole image: the engine's fast path (OpenVINO on the CPU, torch autocast on CUDA) "
                "against the eager fp32 torch module",
        "machine": common.machine(dev),
        "model": info.name,
        "scale": info.scale,
        "input": f"{CONTENT} resized to {size}x{size} (RGB 0-255)",
        "size": size,
        "openvino_prepare_s": prepare_s,
        "rows": rows,
        "diff": "|ours - eager fp32| in levels of 255, both clamped to 0-255",
        "goal": {"speedup": GOAL_SPEEDUP, "verdict": verdict},
    }
    common.publish(args.out_dir, "sr_speed", report, (load_before, load_after), _plot)
    return 0


def _plot(plt: Any, report: dict[str, Any]) -> None:
    common.bar_plot(plt, report, f"{report['model']} x{report['scale']} from {report['size']}²")


if __name__ == "__main__":
    sys.exit(main())
