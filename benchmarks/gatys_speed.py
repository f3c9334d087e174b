"""Gatys optimisation speed: seconds per iteration, ours (impasto.train.gatys.run) against a plain reference loop.

    .venv/bin/python benchmarks/gatys_speed.py [--quick] [--device cuda] [--runs N]

Both optimise the same objective on the same offline VGG-19 (content relu3_3, style relu1_2/relu2_2/relu3_3,
style weight 1e2), from the content image, with L-BFGS taking one function evaluation per iteration (ours,
impasto.train.lbfgs, takes more only where it backtracks; the evaluations are counted); one iteration is one
forward + backward through the loss network plus the optimiser step and the clamp. The reference is
`reference_gatys` in benchmarks/reference.py (torch.optim.LBFGS stepped once per iteration). Per-iteration
times come from timestamps between iterations (ours: its progress callback); the first iterations are warm-up
and excluded. The first losses of both are printed to show they compute the same thing, and the losses after
all but the last iteration (the last the reference scores) to show how far each got.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import common
import numpy as np
import torch
from reference import reference_gatys, reference_vgg

CONTENT, STYLE = "content_images/chicago.jpg", "style_images/public_domain/starry_night.jpg"


class _Stamps:
    """Wall and process-CPU timestamps taken between iterations; per-iteration times are their differences.
    CPU time is kept because on a shared machine wall time is mostly the wait for a core."""

    def __init__(self, device: str):
        self.device = device
        self.wall, self.cpu = [time.perf_counter()], [time.process_time()]

    def __call__(self, *_: object) -> None:
        common.sync(self.device)
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def per_iteration(self) -> tuple[list[float], list[float]]:
        # the first interval includes the setup (style Grams, content features); it is dropped as warm-up
        return np.diff(self.wall).tolist(), np.diff(self.cpu).tolist()


def ours(content: torch.Tensor, style: torch.Tensor, iterations: int, device: str) -> tuple[_Stamps, list[float], int]:
    """Timestamps between iterations (from the progress callback), the loss history of impasto.train.gatys.run
    and the loss evaluations it spent."""
    from impasto.train import gatys

    stamps = _Stamps(device)
    result = gatys.run(content, style, iterations=iterations, device=device, progress=stamps)
    return stamps, result.history, result.evaluations


def reference(content: torch.Tensor, style: torch.Tensor, iterations: int, device: str,
              vgg: torch.nn.Module) -> tuple[_Stamps, list[float], int]:
    stamps = _Stamps(device)
    _, losses, _ = reference_gatys(content, style, iterations, vgg=vgg, on_iteration=stamps)  # type: ignore[arg-type]
    return stamps, losses, len(losses)  # the reference records every evaluation


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--warmup", type=int, default=2, help="iterations excluded from the timing")
    args = p.parse_args(argv)
    with common.quick_threads(args.quick, args.threads):
        return _run(args)


def _run(args: Any) -> int:
    dev = args.device
    sizes = (32, 48) if args.quick else (256, 512)
    runs = args.runs or (2 if args.quick else 6)  # timed iterations per implementation and size
    iterations = args.warmup + runs
    load_before = common.load_average()
    print(f"Gatys speed on {common.device_name(dev)}; load average {load_before:.1f}; "
          f"{runs} timed iterations after {args.warmup} warm-up")
    print(f"{'size':>6} {'implementation':>15} {'s/iteration':>12} {'CPU s/it':>10} {'peak MiB':>9} {'vs ref':>7} "
          f"{'on CPU':>7} {'first loss':>12} {'loss at n-1':>12} {'evals':>6}")
    vgg = reference_vgg(dev)
    rows: list[dict[str, Any]] = []
    for size in sizes:
        content, style = common.square(CONTENT, size).to(dev), common.square(STYLE, size).to(dev)
        # alternate which goes first, so a load that drifts during the run does not always favour one side
        mine = "impasto.train.gatys"
        order = ("reference", mine) if sizes.index(size) % 2 == 0 else (mine, "reference")
        got: dict[str, dict[str, Any]] = {}
        for impl in order:
            with common.PeakMemory(dev) as mem:
                if impl == "reference":
                    stamps, losses, evaluations = reference(content, style, iterations, dev, vgg)
                else:
                    stamps, losses, evaluations = ours(content, style, iterations, dev)
            wall, cpu = stamps.per_iteration()
            got[impl] = _row(size, impl, wall[args.warmup:], cpu[args.warmup:], losses[0], mem.peak)
            got[impl].update(evaluations=evaluations, iterations=iterations, last_loss=losses[iterations - 1])
        ref_row, our_row = got["reference"], got["impasto.train.gatys"]
        history, ref_losses = [our_row["first_loss"]], [ref_row["first_loss"]]
        for r in (ref_row, our_row):
            r["speedup_vs_reference"] = ref_row["s_per_iteration"] / r["s_per_iteration"]
            r["speedup_vs_reference_cpu"] = ref_row["cpu_s_per_iteration"] / r["cpu_s_per_iteration"]
        our_row["first_loss_rel_diff"] = abs(history[0] - ref_losses[0]) / max(abs(ref_losses[0]), 1e-12)
        for r in (ref_row, our_row):
            rows.append(r)
            print(f"{size:>6} {r['implementation']:>15} {r['s_per_iteration']:>11.4f}s "
                  f"{r['cpu_s_per_iteration']:>9.4f}s {r['peak_mib']:>9.0f} {r['speedup_vs_reference']:>6.2f}x "
                  f"{r['speedup_vs_reference_cpu']:>6.2f}x "
                  f"{r['first_loss']:>12.6g} {r['last_loss']:>12.6g} {r['evaluations']:>6}")
    load_after = common.load_average()
    print(f"load average before/after: {load_before:.1f} / {load_after:.1f} on {common.machine(dev)['cpus']} CPUs")
    report = {
        "what": "Gatys seconds per L-BFGS iteration (one forward + backward), ours vs a plain reference loop",
        "machine": common.machine(dev),
        "content": CONTENT, "style": STYLE,
        "objective": "content MSE relu3_3 + 1e2 x Gram MSE relu1_2/relu2_2/relu3_3, offline VGG-19, L-BFGS lr 1",
        "warmup_iterations": args.warmup, "timed_iterations": runs,
        "rows": rows,
    }
    common.publish(args.out_dir, "gatys_speed", report, (load_before, load_after), _plot)
    return 0


def _row(size: int, impl: str, times: list[float], cpu: list[float], first_loss: float, peak: int) -> dict[str, Any]:
    return {"size": size, "implementation": impl, "s_per_iteration": statistics.median(times), "all_s": times,
            "cpu_s_per_iteration": statistics.median(cpu), "first_loss": first_loss, "peak_mib": peak / 2**20}


def _plot(plt: Any, report: dict[str, Any]) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = sorted({r["size"] for r in report["rows"]})
    width = 0.38
    for i, impl in enumerate(("reference", "impasto.train.gatys")):
        vals = [next(r["s_per_iteration"] for r in report["rows"] if r["size"] == s and r["implementation"] == impl)
                for s in sizes]
        ax.bar([j + (i - 0.5) * width for j in range(len(sizes))], vals, width, label=impl)
    ax.set_xticks(range(len(sizes)), [f"{s}x{s}" for s in sizes])
    ax.set_ylabel("seconds per iteration (median)")
    ax.legend()
    fig.suptitle(f"Gatys, {common.where(report)}", fontsize=9)


if __name__ == "__main__":
    sys.exit(main())
