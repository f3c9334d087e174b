"""Refinement (`impasto stylize --refine N`): its speed and the loss it reaches, and its loss curves.

    .venv/bin/python benchmarks/refine_speed.py [--quick] [--megapixels 1] [--iterations 20]
        [--styles starry-night] [--modes full-fp32,full-bf16,512-bf16,768-bf16]
        [--curve-iterations 20] [--no-speed] [--no-curves] [--no-engine]

Speed: a photo (tubingen.jpg from the shared data, resized to about --megapixels) is stylized by the
engine (the feed-forward start), then refined N iterations by impasto.train.gatys.refine in each mode, side
by side in one process: `full` refines the full-size image, `512`/`768` refine at that long side (the style
image scaled by the same factor) and carry the correction (refined - feed-forward at that size, upsampled) to
full size; `fp32`/`bf16` is the precision of the loss network (bf16 autocast; Gram matrices and losses stay
fp32). Every result is scored with the same
full-size fp32 objective (the engine's: offline VGG-19, content relu3_3, style relu1_2/relu2_2/relu3_3, style
weight 1e2, the style image embedded in the model), so the loss columns compare; "vs full fp32" is that
loss over the full-size fp32 refinement's loss at the same iteration count. Times are wall and process CPU
seconds of the refinement alone; the feed-forward stylize is timed on its own, and the whole
`Engine.stylize(refine=N)` call (feed-forward included) once more at the end with the engine's defaults
(--no-engine skips that last run). The load average is printed beside each row: on a shared
machine wall time is partly the wait for a core.

Curves: for each bundled style on the three sample photos that ship with the package, the loss after each
of --curve-iterations refinement iterations from the engine's feed-forward output (the photos are under
512 px, so refinement runs at their full size), plotted into docs/img/refine-curves.png, and before/after
crops into docs/img/refine-crops.png.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import common
import numpy as np
import torch

PHOTO = "content_images/tubingen.jpg"
SAMPLES = common.ROOT / "backend" / "impasto" / "data" / "samples"
DEFAULT_MODES = "full-fp32,full-bf16,512-bf16,768-bf16"


def photo(path: Path, megapixels: float) -> np.ndarray:
    """(H, W, 3) uint8, resized to about `megapixels` (0: as it is)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if megapixels > 0:
            k = (megapixels * 1e6 / (im.size[0] * im.size[1])) ** 0.5
            im = im.resize((max(8, round(im.size[0] * k)), max(8, round(im.size[1] * k))), Image.Resampling.BICUBIC)
        return np.asarray(im)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb.astype(np.float32).transpose(2, 0, 1).copy())[None]


def style_image(name: str) -> torch.Tensor:
    from impasto.engine.engine import decode_rgb
    from impasto.models.store import ModelStore

    info = ModelStore().get(name, "style")
    assert info.style_image_jpeg, f"{name} carries no style image"
    return decode_rgb(info.style_image_jpeg)


def full_loss(content: torch.Tensor, style: torch.Tensor, image: torch.Tensor) -> float:
    """The engine's refinement objective at full size in fp32 (what every mode is compared on)."""
    from impasto.train import gatys

    return gatys.run(content, style, init=image, iterations=0).history[0]


def parse_mode(mode: str) -> tuple[int | None, torch.dtype | None]:
    size, precision = mode.split("-")
    return (None if size == "full" else int(size)), (torch.bfloat16 if precision == "bf16" else None)


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--megapixels", type=float, default=None, help="size of the speed photo (default 1)")
    p.add_argument("--iterations", type=int, default=None, help="refinement iterations (default 20)")
    p.add_argument("--styles", default=None, help="comma-separated styles for the speed rows (default starry-night)")
    p.add_argument("--modes", default=None, help=f"comma-separated modes (default {DEFAULT_MODES})")
    p.add_argument("--curve-iterations", type=int, default=None, help="iterations per curve (default 20)")
    p.add_argument("--img-dir", type=Path, default=None,
                   help="where refine-curves.png and refine-crops.png go (default docs/img; --quick: --out-dir)")
    p.add_argument("--no-speed", action="store_true", help="only the curves")
    p.add_argument("--no-curves", action="store_true", help="only the speed rows")
    p.add_argument("--no-engine", action="store_true", help="skip the whole Engine.stylize(refine=N) row")
    args = p.parse_args(argv)
    with common.quick_threads(args.quick, args.threads):
        return _run(args)


def _run(args: Any) -> int:
    from impasto.engine.engine import Engine, EngineConfig

    dev = args.device
    engine = Engine(EngineConfig(device=dev))
    load_before = common.load_average()
    report: dict[str, Any] = {
        "what": "gatys.refine from the engine's feed-forward output: time and full-size fp32 loss per mode; "
                "loss-vs-iteration curves on the sample photos",
        "machine": common.machine(dev),
        "objective": "impasto.train.gatys defaults: content MSE relu3_3 + 1e2 x Gram MSE relu1_2/relu2_2/relu3_3, "
                     "offline VGG-19, the style image embedded in the model; scored at full size in fp32",
    }
    print(f"refinement on {common.device_name(dev)}; load average {load_before:.1f}")
    if not args.no_speed:
        report["speed"] = _speed(args, engine, dev)
    crops: list[tuple[str, np.ndarray, np.ndarray]] = []  # (style, before, after) on the first photo
    if not args.no_curves:
        report["curves"] = _curves(args, engine, dev, crops)
    load_after = common.load_average()
    print(f"load average before/after: {load_before:.1f} / {load_after:.1f} on {common.machine(dev)['cpus']} CPUs")
    common.publish(args.out_dir, "refine_speed", report, (load_before, load_after), _plot)
    if "curves" in report:
        img_dir = args.img_dir or (args.out_dir if args.quick else common.ROOT / "docs" / "img")
        common.save_plot(img_dir, "refine-curves", lambda plt: _plot_curves(plt, report))
        common.save_plot(img_dir, "refine-crops", lambda plt: _plot_crops(plt, report["curves"], crops))
    return 0


# ---- speed at about 1 MP ----


def _speed(args: Any, engine: Any, dev: str) -> dict[str, Any]:
    from impasto.engine.pixels import PixelBuffer
    from impasto.train import gatys

    megapixels = args.megapixels or (0.01 if args.quick else 1.0)
    iterations = args.iterations or (2 if args.quick else 20)
    modes = (args.modes or ("full-fp32,64-bf16" if args.quick else DEFAULT_MODES)).split(",")
    styles = (args.styles or "starry-night").split(",")
    rgb = photo(common.SHARED / PHOTO, megapixels)
    content = to_tensor(rgb).to(dev)
    h, w = rgb.shape[:2]
    print(f"\nspeed: {PHOTO} at {w}x{h} ({w * h / 1e6:.2f} MP), {iterations} iterations")
    print(f"{'style':>14} {'mode':>10} {'wall s':>8} {'CPU s':>8} {'evals':>6} {'full-size loss':>15} "
          f"{'vs full fp32':>12} {'vs start':>9} {'mean |change|':>13} {'load':>5}")
    out: dict[str, Any] = {"photo": PHOTO, "size": [w, h], "iterations": iterations, "modes": modes, "styles": {}}
    for name in styles:
        style = style_image(name).to(dev)
        engine.stylize(PixelBuffer.from_array(rgb[:64, :64]), name)  # load the network outside the timing
        load = common.load_average()
        t0, c0 = time.perf_counter(), time.process_time()
        ff = to_tensor(engine.stylize(PixelBuffer.from_array(rgb), name).array[..., :3]).to(dev)
        ff_wall, ff_cpu = time.perf_counter() - t0, time.process_time() - c0
        start_loss = full_loss(content, style, ff)
        print(f"{name:>14} {'feed-fwd':>10} {ff_wall:>8.1f} {ff_cpu:>8.1f} {'':>6} {start_loss:>15.5g} {'':>12} "
              f"{1:>9.3f} {0:>13.2f} {load:>5.1f}")
        rows: dict[str, Any] = {}
        base = None  # the full-size fp32 refinement's loss (full-fp32 runs first when it is asked for)
        for mode in sorted(modes, key=lambda m: m != "full-fp32"):
            working, autocast = parse_mode(mode)
            stamps: list[float] = []
            stamp = stamps.append
            load = common.load_average()
            t0, c0 = time.perf_counter(), time.process_time()
            result = gatys.refine(content, ff, style, iterations=iterations, working_size=working,
                                  autocast=autocast, device=dev, progress=lambda *_, s=stamp: s(time.perf_counter()))
            common.sync(dev)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            loss = full_loss(content, style, result.image)
            base = loss if mode == "full-fp32" else base
            r = rows[mode] = {
                "wall_s": wall, "cpu_s": cpu, "evaluations": result.evaluations,
                "iteration_wall_s": [t - t0 for t in stamps], "history": result.history, "loss": loss,
                "vs_full_fp32": loss / base if base else None, "vs_start": loss / start_loss,
                "mean_abs_change": float((result.image - ff).abs().mean()), "load_average": load,
                "load_average_after": common.load_average()}
            vs = "-" if r["vs_full_fp32"] is None else f"{r['vs_full_fp32']:.3f}"
            print(f"{name:>14} {mode:>10} {wall:>8.1f} {cpu:>8.1f} {r['evaluations']:>6} {loss:>15.5g} {vs:>12} "
                  f"{r['vs_start']:>9.3f} {r['mean_abs_change']:>13.2f} {load:>5.1f}", flush=True)
        out["styles"][name] = {"start_loss": start_loss, "rows": rows, "feedforward_wall_s": ff_wall,
                               "feedforward_cpu_s": ff_cpu, "feedforward_load_average": load}
        if not args.no_engine:  # the product path with the engine's defaults, feed-forward included
            load = common.load_average()
            t0, c0 = time.perf_counter(), time.process_time()
            engine.stylize(PixelBuffer.from_array(rgb), name, refine=iterations)
            total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
            print(f"{name:>14} {'engine':>10} {total:>8.1f} {total_cpu:>8.1f} (Engine.stylize(refine={iterations}), "
                  f"feed-forward included, the engine's defaults) {load:>5.1f}")
            out["styles"][name].update(engine_stylize_refine_s=total, engine_stylize_refine_cpu_s=total_cpu,
                                       engine_load_average=load)
    return out


# ---- curves on the sample photos ----


def _curves(args: Any, engine: Any, dev: str, crops: list[tuple[str, np.ndarray, np.ndarray]]) -> dict[str, Any]:
    from impasto.device import autocast_dtype
    from impasto.engine.pixels import PixelBuffer
    from impasto.train import gatys

    iterations = args.curve_iterations or (2 if args.quick else 20)
    photos = sorted(SAMPLES.glob("*.png"))[: 1 if args.quick else 3]
    styles = [m.name for m in engine.models("style") if m.style_image_jpeg][: 1 if args.quick else None]
    autocast = autocast_dtype(engine.device, engine.config.bf16)  # what Engine.stylize(refine=N) uses
    precision = "fp32" if autocast is None else str(autocast).removeprefix("torch.")
    print(f"\ncurves: {len(styles)} styles x {len(photos)} photos, {iterations} iterations, loss network {precision}")
    out: dict[str, Any] = {"iterations": iterations, "photos": [p.name for p in photos], "styles": styles,
                           "loss_network_precision": precision, "runs": []}
    for path in photos:
        rgb = photo(path, 0)
        content = to_tensor(rgb).to(dev)
        for name in styles:
            ff = to_tensor(engine.stylize(PixelBuffer.from_array(rgb), name).array[..., :3]).to(dev)
            load = common.load_average()
            t0 = time.perf_counter()
            result = gatys.refine(content, ff, style_image(name).to(dev), iterations=iterations, device=dev,
                                  autocast=autocast)
            wall = time.perf_counter() - t0
            h = result.history
            falls = all(b < a for a, b in zip(h, h[1:], strict=False))
            print(f"  {path.name:>14} x {name:<16} {h[0]:.4g} -> {h[-1]:.4g} ({h[-1] / h[0]:.3f}) "
                  f"falls every step: {falls}; {result.evaluations} evaluations, {wall:.1f} s, load {load:.1f}")
            out["runs"].append({"photo": path.name, "style": name, "history": h, "falls_every_step": falls,
                                "evaluations": result.evaluations, "wall_s": wall, "load_average": load})
            if path == photos[0]:
                crops.append((name, ff[0].permute(1, 2, 0).byte().cpu().numpy(),
                              result.image[0].round().permute(1, 2, 0).byte().cpu().numpy()))
    return out


# ---- plots ----


def _plot(plt: Any, report: dict[str, Any]) -> None:
    speed = report.get("speed")
    if not speed:
        _plot_curves(plt, report)
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, entry in speed["styles"].items():
        rows = entry["rows"]
        xs = np.arange(len(rows))
        axes[0].bar(xs - 0.2, [r["wall_s"] for r in rows.values()], 0.4, label=f"{name}: wall")
        axes[0].bar(xs + 0.2, [r["cpu_s"] for r in rows.values()], 0.4, label=f"{name}: process CPU")
        for x, r in zip(xs, rows.values(), strict=True):
            axes[0].annotate(f"load {r['load_average']:.1f}", (x, r["wall_s"]), ha="center", va="bottom", fontsize=7)
        axes[1].bar(xs, [r["vs_start"] for r in rows.values()], 0.6, label=name)
        axes[0].set_xticks(xs, list(rows), fontsize=8)
        axes[1].set_xticks(xs, list(rows), fontsize=8)
    axes[0].axhline(60, color="k", ls="--", lw=0.8)
    axes[0].set_ylabel(f"seconds for {speed['iterations']} iterations")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("full-size fp32 loss / feed-forward loss")
    axes[0].legend(fontsize=7)
    w, h = speed["size"]
    fig.suptitle(f"Refinement at {w}x{h}, {speed['iterations']} iterations; {common.where(report)}", fontsize=9)
    fig.tight_layout()


def _plot_curves(plt: Any, report: dict[str, Any]) -> None:
    curves = report["curves"]
    photos = curves["photos"]
    fig, axes = plt.subplots(1, len(photos), figsize=(4.4 * len(photos), 3.6), squeeze=False, sharey=True)
    for ax, name in zip(axes[0], photos, strict=True):
        for run in (r for r in curves["runs"] if r["photo"] == name):
            h = np.asarray(run["history"])
            ax.plot(range(len(h)), h / h[0], marker=".", ms=3, lw=1, label=run["style"])
        ax.set_yscale("log")
        ax.set_xlabel("refinement iteration")
        ax.set_title(name, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("loss / feed-forward loss")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Refinement from the feed-forward output (loss network {curves['loss_network_precision']}), "
                 f"{common.where(report)}", fontsize=9)


def _plot_crops(plt: Any, curves: dict[str, Any], crops: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
    """Before/after crops (the middle of the first photo, pixels doubled) for every style, and where it changed."""
    fig, axes = plt.subplots(len(crops), 3, figsize=(7.8, 2.5 * len(crops)), squeeze=False)
    for row, (style, before, after) in zip(axes, crops, strict=True):
        change = np.abs(after.astype(np.int16) - before.astype(np.int16)).mean(axis=2)
        panels = ((before, "feed-forward"), (after, f"refined, {curves['iterations']} it"),
                  (np.clip(change * 4, 0, 255).astype(np.uint8), f"|change| x4 (mean {change.mean():.1f})"))
        for ax, (img, label) in zip(row, panels, strict=True):
            h, w = img.shape[:2]
            crop = img[h // 4: h // 4 + h // 2, w // 4: w // 4 + w // 2]
            ax.imshow(crop.repeat(2, 0).repeat(2, 1), interpolation="nearest", cmap="gray", vmin=0, vmax=255)
            ax.set_axis_off()
            ax.set_title(f"{style}: {label}", fontsize=8)
    fig.suptitle(f"{curves['photos'][0]}: before/after refinement (centre crops, 2x)", fontsize=9)
    fig.tight_layout()


if __name__ == "__main__":
    sys.exit(main())
