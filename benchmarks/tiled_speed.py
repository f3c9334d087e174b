"""The exact tiled path's speed: a bundled style forced into tiles, torch against OpenVINO pieces, in one process.

    .venv/bin/python benchmarks/tiled_speed.py [--quick] [--size N] [--tile N] [--model NAME] [--torch-fp32]

Every row runs impasto.engine.tiling.run_network with force_tiles (layer by layer, each layer tile by tile,
whole-image instance-norm statistics) on one photo:
  torch bf16        every layer on torch under bf16 autocast (the head convs fp32): the tiled path before issue 13
                    (named torch fp32, and run without autocast, on a CPU without native bf16: the engine's choice
                    there, and emulated bf16 is tens of times slower)
  openvino f32      each layer's convolution an OpenVINO piece (engine/pieces.py) in f32: the exact result
  openvino <prec>   the same at the precision the engine picks (bf16 where the CPU has it and the whole network
                    measured close enough to fp32; the head convs stay f32)
  torch fp32        (--torch-fp32, and --quick) every layer on torch in fp32: the reference computation
Each row: median latency, peak memory above the start, speed-up over the first torch row, and the largest and
99.9th-percentile difference from the fp32 reference (torch fp32 when run, else openvino f32, which the unit
tests hold to torch fp32 within 1/255 of range) in levels of 255, outputs clamped to 0-255 as the engine does.
The default, 2048x2048 in 512 px tiles, keeps benchmarks/cpu.sh short; --size 4096 or 8192 for the big ones.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import common
import numpy as np
import torch

CONTENT = "content_images/chicago.jpg"


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--size", type=int, default=None, help="image side (default 2048; --quick: 96)")
    p.add_argument("--tile", type=int, default=None, help="tile side (default 512, the engine's; --quick: 32)")
    p.add_argument("--model", default="starry-night", help="bundled or imported style (default starry-night)")
    p.add_argument("--torch-fp32", action="store_true", help="also run torch fp32 tiled (the reference; slow)")
    args = p.parse_args(argv)
    with common.quick_threads(args.quick, args.threads):
        return _run(args)


def _run(args: Any) -> int:
    from impasto.engine import runtime
    from impasto.engine.pieces import Pieces
    from impasto.engine.tiling import RunConfig, run_network
    from impasto.models.store import ModelStore
    from impasto.nets.spec import spec_of

    if args.device != "cpu":
        print("the OpenVINO pieces run on the CPU only")
        return 2
    size, tile = args.size or (96 if args.quick else 2048), args.tile or (32 if args.quick else 512)
    runs = args.runs or 1
    load_before = common.load_average()
    store = ModelStore()
    info, net = store.get(args.model, "style"), store.load(args.model)
    plan = spec_of(net).plan
    assert plan is not None
    x = common.square(CONTENT, size)
    print(f"tiled stylize speed on {common.device_name('cpu')}; load average {load_before:.1f}; {info.name}, "
          f"{size}x{size} in {tile} px tiles")
    bf16 = runtime.precision_for(torch.bfloat16)  # 'bf16' where the CPU has it
    cfg32 = RunConfig(tile=tile, force_tiles=True)
    cfg16 = RunConfig(tile=tile, force_tiles=True, autocast=torch.bfloat16 if bf16 == "bf16" else None)

    torch_name = "torch bf16" if bf16 == "bf16" else "torch fp32"
    runners: dict[str, tuple[RunConfig, Pieces | None]] = {torch_name: (cfg16, None)}
    prepare_s = None
    if runtime.openvino_version() is not None:
        start = time.perf_counter()
        precision = runtime.prepare(net, bf16, info.sha256).precision  # the engine's choice for this model
        ov32 = Pieces(plan, info.sha256, "f32")
        ov32.compiled()
        runners["openvino f32"] = (cfg32, ov32)
        if precision != "f32":
            ov16 = Pieces(plan, info.sha256, precision)
            ov16.compiled()
            runners[f"openvino {precision}"] = (cfg16, ov16)
        prepare_s = time.perf_counter() - start
    else:
        print("OpenVINO does not load here: torch only")
    if (args.torch_fp32 or args.quick) and torch_name != "torch fp32":
        runners["torch fp32"] = (cfg32, None)
    small = common.square(CONTENT, min(size, 2 * tile))

    rows: list[dict[str, Any]] = []
    outputs: dict[str, torch.Tensor] = {}
    print(f"{'config':>14} {'median':>9} {'CPU':>8} {'peak MiB':>9} {'vs torch':>9}")
    for name, (cfg, pieces) in runners.items():
        run_network(net, small, cfg, pieces=pieces)  # the one-time kernel set-up, on a small image: not timed
        m = common.measure(lambda cfg=cfg, pieces=pieces: run_network(net, x, cfg, pieces=pieces), "cpu", runs,
                           warmup=0)
        outputs[name] = m.pop("result").clamp(0, 255)
        row = {"config": name, **m, "runs": len(m["all_s"]), "speedup_vs_torch":
               (rows[0]["median_s"] if rows else m["median_s"]) / m["median_s"]}
        rows.append(row)
        print(f"{name:>14} {row['median_s']:>8.2f}s {row['cpu_s']:>7.1f}s {row['peak_mib']:>9.0f} "
              f"{row['speedup_vs_torch']:>8.2f}x")
    ref_name = "torch fp32" if "torch fp32" in outputs else "openvino f32" if "openvino f32" in outputs else None
    if ref_name is not None:
        ref = outputs[ref_name]
        print(f"difference from {ref_name} (levels of 255):")
        for row in rows:
            d = (outputs[row["config"]] - ref).abs().flatten().numpy()
            k = min(int(len(d) * 0.999), len(d) - 1)
            row["max_levels"], row["p999_levels"] = float(d.max()), float(np.partition(d, k)[k])
            print(f"{row['config']:>14} max {row['max_levels']:.3f}  p99.9 {row['p999_levels']:.3f}")
    if prepare_s is not None:
        print(f"building (or reading the cache) and compiling the pieces: {prepare_s:.1f} s")
    load_after = common.load_average()
    print(f"load average before/after: {load_before:.1f} / {load_after:.1f} on {common.machine('cpu')['cpus']} CPUs")
    report = {
        "what": "exact tiled stylize (force_tiles): torch against the OpenVINO pieces of engine/pieces.py",
        "machine": common.machine("cpu"),
        "model": info.name,
        "input": f"{CONTENT} resized to {size}x{size} (RGB 0-255)",
        "size": size,
        "tile": tile,
        "openvino_prepare_s": prepare_s,
        "rows": rows,
        "diff": f"|row - {ref_name}| in levels of 255, both clamped to 0-255",
    }
    common.publish(args.out_dir, "tiled_speed", report, (load_before, load_after), _plot)
    return 0


def _plot(plt: Any, report: dict[str, Any]) -> None:
    common.bar_plot(plt, report, f"{report['model']} {report['size']}², {report['tile']} px tiles")


if __name__ == "__main__":
    sys.exit(main())
