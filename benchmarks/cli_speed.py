"""The whole `impasto stylize` process against the plain reference network's forward pass alone (issue 13).

    .venv/bin/python benchmarks/cli_speed.py [--quick] [--megapixels 6] [--style starry-night] [--runs 3]

A photo (tubingen.jpg from the shared data) is resized to about --megapixels, at a slightly different size
for each run, so that every run meets a size never seen before. `python -m impasto stylize IN OUT --style S
-q` with the default flags runs as a new process and is timed from its start to its exit: Python and torch
starting, the model loaded (and its OpenVINO conversion read from the cache, or made), the photo decoded,
the network, the PNG written. Beside it, in this process, the plain reference (benchmarks/reference.py:
eager fp32, whole image, the same weights) runs the network's forward pass alone on the same pixels, after a
warm-up at that size: what the process is measured against. Issue 13's target: the whole process at least
4x faster than that forward pass (moonshot 8x). The first run's PNG is compared with the reference's output
on the photo with the engine's mirrored edge margin (untimed).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import numpy as np
import torch

PHOTO = "content_images/tubingen.jpg"
GOAL_SPEEDUP = 4.0
ENGINE_MARGIN = 32  # EngineConfig.edge_margin's default


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--megapixels", type=float, default=None, help="photo size (default 6; --quick: 0.01)")
    p.add_argument("--style", default="starry-night", help="a bundled style in the pytorch/examples form")
    args = p.parse_args(argv)
    with common.quick_threads(args.quick, args.threads):
        return _run(args)


def _photo(megapixels: float, run: int) -> np.ndarray:
    """tubingen.jpg at about `megapixels`, about 4:3, 4 px wider and taller for each run (multiples of 4, which
    the reference network needs to give back its input's size)."""
    from PIL import Image

    w = round((megapixels * 1e6 * 4 / 3) ** 0.5) // 4 * 4 + 4 * run
    h = round(w * 3 / 4) // 4 * 4 + 4 * run
    with Image.open(common.SHARED / PHOTO) as im:
        return np.asarray(im.convert("RGB").resize((w, h), Image.Resampling.BICUBIC))


def _run(args: Any) -> int:
    from impasto.models.store import ModelStore
    from PIL import Image
    from reference import reference_net

    megapixels = args.megapixels or (0.01 if args.quick else 6.0)
    runs = args.runs or (1 if args.quick else 3)
    load_before = common.load_average()
    net = ModelStore().load(args.style, "cpu")
    ref_net = reference_net({k: v.float() for k, v in net.state_dict().items()})
    print(f"the impasto stylize process on a {megapixels:g} MP photo against the reference forward pass, "
          f"{common.device_name('cpu')}; load average {load_before:.1f}; style {args.style}")
    print(f"{'run':>4} {'size':>11} {'process s':>10} {'ref forward s':>14} {'vs ref':>7} {'max diff':>9}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(runs):
            rgb = _photo(megapixels, run)
            src, out = Path(tmp) / f"in{run}.png", Path(tmp) / f"out{run}.png"
            Image.fromarray(rgb).save(src)
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "impasto", "stylize", str(src), str(out), "--style",
                                   args.style, "-q"], capture_output=True, text=True)
            process_s = time.perf_counter() - start
            if proc.returncode != 0:
                print(proc.stdout + proc.stderr)
                return 1
            x = torch.from_numpy(rgb.astype(np.float32).transpose(2, 0, 1).copy())[None]
            ref = common.measure(lambda x=x: _forward(ref_net, x), "cpu", 1)
            row = {"run": run, "width": rgb.shape[1], "height": rgb.shape[0], "process_s": process_s,
                   "reference_forward_s": ref["median_s"], "reference_cpu_s": ref["cpu_s"],
                   "speedup_vs_reference_forward": ref["median_s"] / process_s, "max_diff_levels": None}
            if run == 0:  # what the process wrote is the network's picture: the reference, untimed, on the photo
                # with the 32 px mirrored margin the engine adds (docs/quality.md), gives the same pixels
                with Image.open(out) as im:
                    got = np.asarray(im.convert("RGB"), dtype=np.float32)
                m = ENGINE_MARGIN
                y = _forward(ref_net, torch.nn.functional.pad(x, (m, m, m, m), mode="reflect"))[..., m:-m, m:-m]
                expected = y[0].clamp(0, 255).round().numpy().transpose(1, 2, 0)
                row["max_diff_levels"] = float(np.abs(got - expected).max())
            rows.append(row)
            diff = "" if row["max_diff_levels"] is None else f"{row['max_diff_levels']:>9.2f}"
            print(f"{run:>4} {rgb.shape[1]:>5}x{rgb.shape[0]:<5} {process_s:>10.2f} {ref['median_s']:>14.2f} "
                  f"{row['speedup_vs_reference_forward']:>6.2f}x {diff}")
    speedups = sorted(r["speedup_vs_reference_forward"] for r in rows)
    median = speedups[len(speedups) // 2]
    met = median >= GOAL_SPEEDUP
    verdict = (f"goal (the whole process >= {GOAL_SPEEDUP:.0f}x the reference's forward pass on a ~{megapixels:g} MP "
               f"photo at a new size): {'MET' if met else 'NOT MET'}: median {median:.2f}x over {len(rows)} runs")
    load_after = common.load_average()
    print(verdict)
    print(f"load average before/after: {load_before:.1f} / {load_after:.1f} on {common.machine('cpu')['cpus']} CPUs")
    report = {
        "what": "wall time of a new `impasto stylize` process (default flags) against the plain reference "
                "network's forward pass alone on the same pixels, eager fp32, in the benchmark's process",
        "machine": common.machine("cpu"),
        "style": args.style,
        "photo": f"{PHOTO} resized to about {megapixels:g} MP, a new size per run",
        "rows": rows,
        "median_speedup": median,
        "goal": {"speedup": GOAL_SPEEDUP, "met": met, "verdict": verdict},
    }
    common.publish(args.out_dir, "cli_speed", report, (load_before, load_after), _plot)
    return 0


def _forward(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return net(x).float()


def _plot(plt: Any, report: dict[str, Any]) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.2))
    labels = [f"{r['width']}x{r['height']}" for r in report["rows"]]
    ys = np.arange(len(labels))
    ax.barh(ys - 0.2, [r["process_s"] for r in report["rows"]], 0.4, label="impasto stylize (whole process)")
    ax.barh(ys + 0.2, [r["reference_forward_s"] for r in report["rows"]], 0.4, label="reference forward pass")
    ax.set_yticks(ys, labels)
    ax.set_xlabel("seconds")
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)
    ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(f"{report['style']}, {common.where(report)}", fontsize=9)


if __name__ == "__main__":
    sys.exit(main())
