"""Speed against quality: Gatys optimisation vs the feed-forward network, at equal loss.

    .venv/bin/python benchmarks/speed_quality.py [--quick] [--device cuda] [--size 256] [--iterations 60]
        [--styles starry-night,composition-vii] [--photos 4] [--runs 5] [--gatys-runs 3]

Johnson et al. (2016) compare their network with Gatys at a fixed iteration count; a review of the paper
asks instead how long Gatys takes to reach the loss the network reaches, and what Gatys does when started
from the network's output. The pairs are every bundled style network we trained ourselves (`impasto train
style`: its descriptor names the objective it minimised; the converted networks, trained elsewhere on another
loss network, are not scored, since our objective is not theirs) x 4 content photos (chicago, tubingen,
hoovertowernight, amber). For each pair this script:
  1. stylizes the photo with the network through Engine.stylize (the product path: RGBA u8 in and out, the
     engine's default precision): median wall time of --runs calls after one untimed warm-up;
  2. scores that output with the very objective the network was trained on (from its descriptor: loss
     network, content/style layers, weights, the embedded style image at its training size);
  3. runs Gatys (impasto.train.gatys: L-BFGS whose first step moves the most-pulled pixel by 32 grey levels,
     then about one evaluation per iteration, backtracking only when a step would raise the loss) on that
     objective from the content photo, from noise, and from the feed-forward output (what `stylize --refine`
     runs at this size), --gatys-runs times each, recording the loss after each iteration against wall time;
     a curve's time at iteration k is the median over its runs (the loss history is deterministic: the same
     start, seed and arithmetic; the runs' histories are kept and compared);
  4. takes the time at which Gatys from the photo / from noise first reaches the feed-forward loss, and the
     speed-up of the network at equal loss (that time / the feed-forward time).
The summary gives, per start, the speed-up's median, quartiles, min and max across pairs and the median per
style. A pair where Gatys does not reach the feed-forward loss within --iterations is counted and given a
lower bound (its last time / feed-forward time); the order statistics then include that bound, so they are
lower bounds themselves. The run from the feed-forward output starts the clock at the feed-forward time.

Loading is excluded on both sides. Feed-forward time: Engine.stylize's descriptor lookup, u8 -> float,
the network, float -> u8; the model file was loaded into the engine's cache by the warm-up call. Gatys time:
gatys.run's criterion set-up, the style Gram targets, the content targets, the start image, the first
evaluation and the iterations; the VGG-19 weights were loaded into impasto.train.gatys's per-device cache by
the untimed scoring call of step 2 (iterations=0: one forward and backward at this size, so the kernels are
warm too), and the script counts load_loss_net calls during the timed runs (recorded; 0 expected). Outside
both: reading and resizing the photo, decoding the style image.
"""

from __future__ import annotations

import functools
import statistics
import sys
import time
from typing import Any
from unittest import mock

import common
import numpy as np
import torch

PHOTOS = ("content_images/chicago.jpg", "content_images/tubingen.jpg", "content_images/hoovertowernight.jpg",
          "content_images/amber.jpg")
INITS = ("content", "noise", "feedforward")
RACED = ("content", "noise")  # the starts raced against the network; "feedforward" starts at its loss

TIMING = {
    "feedforward": {"in": "Engine.stylize on an RGBA u8 buffer: descriptor lookup, u8 -> float, the network at the "
                          "engine's default precision, clamp, float -> u8",
                    "out": "loading the model file (the untimed warm-up call caches it in the engine), reading and "
                           "resizing the photo"},
    "gatys": {"in": "gatys.run: criterion set-up, style Gram targets, content targets, start image, first "
                    "evaluation, the iterations",
              "out": "loading the VGG-19 weights (cached in impasto.train.gatys by the untimed iterations=0 scoring "
                     "call; load_loss_net calls during timed runs are counted), decoding the style image, reading "
                     "and resizing the photo"},
}


@functools.cache
def _store() -> Any:
    # one store for the whole run: a fresh ModelStore hashes every model file on its first listing
    from impasto.models.store import ModelStore

    return ModelStore()


def load_rgb(path: str, long_side: int) -> np.ndarray:
    """(H, W, 3) uint8 with the long side `long_side` and both sides multiples of 4 (no padding in the net)."""
    from PIL import Image

    with Image.open(common.SHARED / path) as f:
        im = f.convert("RGB")
    k = long_side / max(im.size)
    w, h = (max(4, round(s * k / 4) * 4) for s in im.size)
    return np.asarray(im.resize((w, h), Image.Resampling.BICUBIC))


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb.astype(np.float32).transpose(2, 0, 1).copy())[None]


def style_image(name: str) -> torch.Tensor:
    """The style image embedded in the model, at the size its Gram targets had in training."""
    from impasto.engine.engine import decode_rgb, resize

    info = _store().get(name, "style")
    if not info.style_image_jpeg:
        raise SystemExit(f"model {name} carries no style image")
    style = decode_rgb(info.style_image_jpeg)
    side = (info.training or {}).get("style_size")
    if side and max(style.shape[-2:]) > side:
        k = side / max(style.shape[-2:])
        style = resize(style, max(1, round(style.shape[-2] * k)), max(1, round(style.shape[-1] * k)))
    return style


def objective(name: str) -> dict[str, Any]:
    """The objective a network we trained with `impasto train style` minimised, from its descriptor (loss
    network, layers, weights); {} for a network trained elsewhere, which this script does not score."""
    t = _store().get(name, "style").training or {}
    if t.get("loss_net") != "vgg19-partial" or not t.get("content_layer"):
        return {}
    return {"loss_net": t["loss_net"], "content_layer": t["content_layer"], "style_layers": tuple(t["style_layers"]),
            "content_weight": float(t["content_weight"]), "style_weight": float(t["style_weight"]),
            "tv_weight": float(t["tv_weight"]), "grid_weight": float(t.get("grid_weight", 0.0))}


def own_styles() -> list[str]:
    """Bundled style networks we trained (a non-empty objective), by name: new ones are picked up as they ship."""
    return sorted(i.name for i in _store().list("style") if i.bundled and objective(i.name))


def choose_styles(wanted: str | None, quick: bool) -> list[str]:
    own = own_styles()
    if not own:
        raise SystemExit("no bundled style network carries its training objective: nothing to score")
    if not wanted:
        return own[:1] if quick else own
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    other = [n for n in names if n not in own]
    if other:  # scoring a converted network on our objective would not be the loss it minimised
        raise SystemExit(f"not an own bundled style: {', '.join(other)}; choose from {', '.join(own)}")
    return names


def gatys_once(content: torch.Tensor, style: torch.Tensor, init: Any, iterations: int, dev: str,
               loss: dict[str, Any]) -> dict[str, Any]:
    """One Gatys run: loss after k iterations (k = 0..n) and the wall and CPU seconds, from the call, at which
    those pixels existed; `loads`: load_loss_net calls inside the timed call (0 when the cache was warm)."""
    from impasto.train import gatys

    stamps: list[float] = []
    cpu_stamps: list[float] = []

    def progress(stage: str, fraction: float) -> None:
        stamps.append(time.perf_counter())
        cpu_stamps.append(time.process_time())

    with mock.patch.object(gatys, "load_loss_net", wraps=gatys.load_loss_net) as loads:
        start, cpu_start = time.perf_counter(), time.process_time()
        result = gatys.run(content.to(dev), style.to(dev), init=init, iterations=iterations, device=dev,
                           progress=progress, **loss)
    # history[k] scores the pixels left after k iterations, which existed at the k-th progress call
    times = [0.0] + [s - start for s in stamps]
    # process CPU time beside wall time: on a shared machine the wall clock mostly measures the queue
    cpu = [0.0] + [c - cpu_start for c in cpu_stamps]
    return {"history": result.history[: len(times)], "times_s": times, "cpu_s": cpu, "terms": result.terms,
            "evaluations": result.evaluations, "loads": loads.call_count}


def gatys_curve(content: torch.Tensor, style: torch.Tensor, init: Any, iterations: int, dev: str,
                offset: float, cpu_offset: float, loss: dict[str, Any], runs: int,
                target: float | None = None) -> dict[str, Any]:
    """`runs` Gatys runs from one start: the first run's loss history against the per-iteration median of the
    runs' times (a median of rising sequences still rises), shifted by the offsets; every run kept. With a
    `target` loss the runs after the first stop at the iteration where the first reached it (the history is
    deterministic): they are there to time that moment, and the iterations after it keep the first run's."""
    done = [gatys_once(content, style, init, iterations, dev, loss)]
    reach = None if target is None else next((k for k, v in enumerate(done[0]["history"]) if v <= target), None)
    done += [gatys_once(content, style, init, iterations if reach is None else max(reach, 1), dev, loss)
             for _ in range(runs - 1)]
    first = done[0]["history"]
    rel_diff = max(abs(a - b) / max(abs(b), 1e-30) for r in done for a, b in zip(r["history"], first, strict=False))

    def med(key: str, at: float) -> list[float]:
        # the median over every run up to where the repeats stopped, then the first run's steps added on
        m = min(len(r[key]) for r in done) - 1
        head = [statistics.median(r[key][k] for r in done) for k in range(m + 1)]
        tail = [head[m] + t - done[0][key][m] for t in done[0][key][m + 1 :]]
        return [at + t for t in head + tail]

    return {
        "history": first, "times_s": med("times_s", offset), "cpu_s": med("cpu_s", cpu_offset),
        "final_terms": done[0]["terms"], "evaluations": done[0]["evaluations"],
        "histories_agree": all(r["history"] == first[: len(r["history"])] for r in done),
        "history_max_rel_diff": rel_diff,
        "loss_net_loads_while_timed": sum(r["loads"] for r in done),
        "runs": [{k: r[k] for k in ("history", "times_s", "cpu_s", "evaluations")} for r in done],
    }


def first_reach(curve: dict[str, Any], target: float) -> tuple[int | None, float | None, float | None]:
    """(iteration, wall s, CPU s) at which the loss first is at or below `target`; Nones if never."""
    for k, loss in enumerate(curve["history"]):
        if loss <= target:
            return k, curve["times_s"][k], curve["cpu_s"][k]
    return None, None, None


def race(curve: dict[str, Any], ff: dict[str, Any], ff_loss: float) -> None:
    """Add to a curve from the photo or from noise when it first reaches the feed-forward loss and the
    network's speed-up at equal loss; not reached: the speed-up is above (last time / feed-forward time)."""
    k, t, c = first_reach(curve, ff_loss)
    curve.update({"reach_iteration": k, "reach_time_s": t, "reach_cpu_s": c,
                  "speedup_at_equal_loss": None if t is None else t / ff["median_s"],
                  "speedup_at_equal_loss_cpu": None if c is None else c / ff["cpu_s"],
                  "speedup_lower_bound": None if t is not None else curve["times_s"][-1] / ff["median_s"],
                  "speedup_lower_bound_cpu": None if c is not None else curve["cpu_s"][-1] / ff["cpu_s"]})


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--size", type=int, default=None, help="long side of the content image (default 256)")
    p.add_argument("--iterations", type=int, default=None, help="Gatys iterations per run (default 60)")
    p.add_argument("--styles", default=None, help="comma-separated own bundled styles (default: all of them)")
    p.add_argument("--photos", type=int, default=None, help=f"how many of the {len(PHOTOS)} content photos "
                                                            f"(default {len(PHOTOS)})")
    p.add_argument("--gatys-runs", type=int, default=None, help="runs of each Gatys curve (default 3)")
    args = p.parse_args(argv)
    with common.quick_threads(args.quick, args.threads):
        return _run(args)


def _run(args: Any) -> int:
    from impasto.engine.engine import Engine, EngineConfig

    dev = args.device
    size = args.size or (32 if args.quick else 256)
    iterations = args.iterations or (3 if args.quick else 60)
    styles = choose_styles(args.styles, args.quick)
    photos = PHOTOS[: args.photos or (1 if args.quick else len(PHOTOS))]
    missing = [p for p in photos if not (common.SHARED / p).is_file()]
    if missing:  # up front, not after an hour of the pairs before it
        raise SystemExit(f"content photos missing under {common.SHARED}: {', '.join(missing)}")
    runs = args.runs or (1 if args.quick else 5)
    gatys_runs = args.gatys_runs or (1 if args.quick else 3)
    load_before = common.load_average()
    engine = Engine(EngineConfig(device=dev))
    precision = engine.run_config().autocast
    print(f"speed vs quality on {common.device_name(dev)}; load average {load_before:.1f}; {len(styles)} own "
          f"styles x {len(photos)} photos; content long side {size}; {iterations} Gatys iterations, median of "
          f"{gatys_runs} runs per curve; feed-forward: Engine.stylize, autocast {precision}, median of {runs}")
    for side, what in TIMING.items():
        print(f"  {side} time: in: {what['in']}; out: {what['out']}")
    results = [pair(engine, content_path, style_name, size, iterations, runs, gatys_runs, dev)
               for style_name in styles for content_path in photos]
    summary = summarise(results)
    print_summary(summary, len(results))
    load_after = common.load_average()
    print(f"\nload average before/after: {load_before:.1f} / {load_after:.1f} on {common.machine(dev)['cpus']} CPUs")
    report = {
        "what": "Gatys loss vs wall time from content, noise and the feed-forward output; feed-forward loss marked",
        "machine": common.machine(dev),
        "objective": "each network's own training objective (per pair under 'objective'), from its descriptor; "
                     "impasto.train.lbfgs (first step 32 grey levels, backtracking), the same for all three starts",
        "feedforward": f"Engine.stylize (RGBA u8), autocast {precision}, median of {runs} after 1 warm-up",
        "timing": TIMING,
        "styles": styles, "photos": list(photos),
        "size_long_side": size, "iterations": iterations, "runs": runs, "gatys_runs": gatys_runs,
        "loss_net_loads_while_timed": sum(c["loss_net_loads_while_timed"] for p in results
                                          for c in p["gatys"].values()),
        "pairs": results,
        "summary": summary,
    }
    common.publish(args.out_dir, "speed_quality", report, (load_before, load_after), _plot)
    return 0


def pair(engine: Any, content_path: str, style_name: str, size: int, iterations: int, runs: int, gatys_runs: int,
         dev: str) -> dict[str, Any]:
    """One content photo x style: the feed-forward time and loss, and the three Gatys curves."""
    from impasto.engine.pixels import PixelBuffer
    from impasto.train import gatys

    rgb = load_rgb(content_path, size)
    content, style = to_tensor(rgb), style_image(style_name)
    loss = objective(style_name)
    buf = PixelBuffer.from_array(rgb)
    ff = common.measure(lambda: engine.stylize(buf, style_name), dev, runs)
    ff_image = to_tensor(ff["result"].array[..., :3])
    # untimed, and before any timed run: loads the loss network into gatys's cache and runs one forward and
    # backward at this size, so the timed curves below exclude loading as the feed-forward time does
    ff_terms = gatys.run(content.to(dev), style.to(dev), init=ff_image.to(dev), iterations=0, device=dev,
                         **loss).terms
    ff_loss = ff_terms["total"]
    # what every Gatys time from iteration 1 on includes before its first step: criterion, style Gram targets,
    # content targets, first evaluation (warm: the scoring call above loaded the net); recorded to show its share
    setup = common.measure(lambda: gatys.run(content.to(dev), style.to(dev), iterations=0, device=dev, **loss), dev,
                           gatys_runs, warmup=0)
    entry: dict[str, Any] = {
        "content": content_path, "style": style_name, "size": list(rgb.shape[:2]), "objective": loss,
        "feedforward": {"time_s": ff["median_s"], "all_s": ff["all_s"], "cpu_s": ff["cpu_s"], "loss": ff_loss,
                        "terms": ff_terms},
        "gatys_setup_s": setup["median_s"], "gatys": {}, "speedup_at_equal_loss": {}, "speedup_at_equal_loss_cpu": {},
    }
    print(f"\n{content_path.rsplit('/', 1)[-1]} x {style_name} ({rgb.shape[1]}x{rgb.shape[0]}): feed-forward "
          f"{ff['median_s']:.3f} s ({ff['cpu_s']:.3f} CPU s), loss {ff_loss:.4g} "
          f"(content {ff_terms.get('content', 0):.4g}, style {ff_terms.get('style', 0):.4g}); Gatys set-up and first "
          f"evaluation {setup['median_s']:.3f} s")
    print(f"  {'Gatys from':>12} {'loss at 0':>10} {'final loss':>11} {'reaches FF loss at':>30} "
          f"{'FF speed-up (wall, CPU)':>17}  runs agree")
    for init in INITS:
        ff_start = init == "feedforward"
        # from the network's output nothing is raced, so one run draws the curve
        curve = gatys_curve(content, style, ff_image if ff_start else init, iterations, dev,
                            ff["median_s"] if ff_start else 0.0, ff["cpu_s"] if ff_start else 0.0, loss,
                            1 if ff_start else gatys_runs, None if ff_start else ff_loss)
        curve.update({"reach_iteration": None, "reach_time_s": None, "reach_cpu_s": None,
                      "speedup_at_equal_loss": None, "speedup_at_equal_loss_cpu": None,
                      "final_loss": curve["history"][-1],
                      "s_per_iteration": statistics.median(np.diff(curve["times_s"][1:]).tolist() or [0.0])})
        if not ff_start:
            race(curve, ff, ff_loss)
            entry["speedup_at_equal_loss"][init] = curve["speedup_at_equal_loss"]
            entry["speedup_at_equal_loss_cpu"][init] = curve["speedup_at_equal_loss_cpu"]
        entry["gatys"][init] = curve
        print(f"  {init:>12} {curve['history'][0]:>10.4g} {curve['final_loss']:>11.4g} {_reach(curve, iterations):>30} "
              f"{_x(curve, ''):>8} {_x(curve, '_cpu'):>8}  {'yes' if curve['histories_agree'] else 'no'}")
    return entry


def _reach(curve: dict[str, Any], iterations: int) -> str:
    if "speedup_lower_bound" not in curve:
        return "(starts there)"
    if curve["reach_iteration"] is None:
        return f"not in {iterations} it"
    return f"it {curve['reach_iteration']}, {curve['reach_time_s']:.2f} s, {curve['reach_cpu_s']:.2f} CPU s"


def _x(curve: dict[str, Any], clock: str) -> str:
    """The speed-up on the wall ('') or CPU ('_cpu') clock; '>bound' when not reached, '-' when not raced."""
    v, bound = curve["speedup_at_equal_loss" + clock], curve.get("speedup_lower_bound" + clock)
    if v is None:
        return "-" if bound is None else f">{bound:.1f}x"
    return f"{v:.1f}x"


def _speedup(curve: dict[str, Any], clock: str = "") -> float:
    """The speed-up, or its lower bound where the loss was not reached."""
    v = curve["speedup_at_equal_loss" + clock]
    return curve["speedup_lower_bound" + clock] if v is None else v


# ---- summary ----


def spread(values: list[float]) -> dict[str, float]:
    """Median, quartiles (linear interpolation, numpy's default), interquartile range, min and max."""
    q1, med, q3 = (float(q) for q in np.percentile(values, [25, 50, 75]))
    return {"median": med, "q1": q1, "q3": q3, "iqr": q3 - q1, "min": min(values), "max": max(values)}


def summarise(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per start raced against the network: the speed-up at equal loss across pairs and per style, wall and CPU.
    A pair not reached enters with its lower bound, so with any such pair every order statistic is a lower
    bound too (raising a value never lowers an order statistic)."""
    out: dict[str, Any] = {}
    for init in RACED:
        curves = [(p, p["gatys"][init]) for p in pairs]
        wall = [_speedup(c) for _, c in curves]
        cpu = [_speedup(c, "_cpu") for _, c in curves]
        missed = [{"content": p["content"], "style": p["style"], "speedup_above": c["speedup_lower_bound"],
                   "speedup_above_cpu": c["speedup_lower_bound_cpu"]}
                  for p, c in curves if c["reach_iteration"] is None]
        per_style: dict[str, Any] = {}
        for style in dict.fromkeys(p["style"] for p in pairs):
            mine = [(w, c["reach_iteration"] is None) for (p, c), w in zip(curves, wall, strict=True)
                    if p["style"] == style]
            per_style[style] = {"median": statistics.median(w for w, _ in mine), "pairs": len(mine),
                                "not_reached": sum(m for _, m in mine)}
        out[init] = {**spread(wall), "pairs": len(pairs), "not_reached": len(missed),
                     "lower_bounds": bool(missed), "not_reached_pairs": missed, "per_style": per_style,
                     "cpu": spread(cpu)}
    return out


def print_summary(summary: dict[str, Any], n: int) -> None:
    import tables  # the docs' renderer: one table of the summary, printed here as it appears there

    print(f"\nfeed-forward speed-up at equal loss (Gatys wall time to first reach the network's loss / feed-forward "
          f"wall time), across {n} pairs; '>' marks a lower bound (a pair not reached in the iterations)")
    print("\n".join(tables.speed_quality_summary({"summary": summary})))


# ---- plot ----


def _plot(plt: Any, report: dict[str, Any]) -> None:
    """One panel per pair, a row per style (its photos across)."""
    pairs = report["pairs"]
    styles = list(dict.fromkeys(p["style"] for p in pairs))
    cols = max(sum(p["style"] == s for p in pairs) for s in styles)
    fig, axes = plt.subplots(len(styles), cols, figsize=(4.6 * cols, 3.8 * len(styles)), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for row, style in enumerate(styles):
        for ax, pair in zip(axes[row], (p for p in pairs if p["style"] == style), strict=False):
            _panel(ax, pair)
        axes[row][0].set_ylabel("training objective (total loss)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Speed vs quality (median of {report.get('gatys_runs', 1)} Gatys runs), {common.where(report)}",
                 fontsize=9)
    fig.tight_layout()  # a row's panel titles would otherwise overlap the axis labels of the row above


def _panel(ax: Any, pair: dict[str, Any]) -> None:
    ax.set_visible(True)
    ff = pair["feedforward"]
    for init, curve in pair["gatys"].items():
        # the loss of the pixels after k iterations holds until iteration k+1 is done: a step plot
        ax.step(curve["times_s"], curve["history"], where="post", lw=1, label=f"Gatys from {init}")
    ax.axhline(ff["loss"], color="k", ls="--", lw=0.8)
    ax.plot([ff["time_s"]], [ff["loss"]], "k*", ms=11, label="feed-forward")
    ax.set_yscale("log")
    ax.set_xscale("symlog", linthresh=max(ff["time_s"], 1e-3))  # linear up to the feed-forward time
    ax.set_xlim(left=0)
    ax.set_xlabel("wall time (s)")
    ax.set_title(f"{pair['content'].rsplit('/', 1)[-1]} x {pair['style']}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)


if __name__ == "__main__":
    sys.exit(main())
