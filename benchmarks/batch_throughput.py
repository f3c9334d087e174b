"""Throughput of `impasto batch`: images per second for 1 and 2 workers, local pool and Ray, with the ratio.

    .venv/bin/python benchmarks/batch_throughput.py [--images 24] [--size 128] [--modes local,ray]
                                                    [--device cpu] [--out docs/benchmarks/batch.json]
                                                    [--quick] [--out-dir DIR]

--quick (a smoke test) runs 8 images of 48 px, local mode only unless --modes says otherwise.

Each run stylizes the same folder of crops of a bundled sample photo into a fresh output folder through
`impasto.batch.run_batch`, the code behind the CLI. Two rates per run:
  - end to end: images / wall time of the whole batch, worker start-up and model loading included;
  - steady: images after the first / time from the first finished image to the last, which is what a long
    batch approaches once every worker is up.
Every worker runs single-threaded (--threads 1, the default for one worker per core), so the scaling ratio,
the 2-worker rate over the 1-worker rate, measures adding a worker; one more local row shows 1 worker with
torch threads over all cores (what `--workers 1` gives). In Ray mode the local instance is started
once, before the timed runs (a real cluster is already up); the actors start inside each timed run.
On a shared machine the load average and CPU pressure say how much of the CPU the benchmark really had, and the
median CPU seconds per image (from the manifest records) show whether the work itself changed;
workers / CPU seconds per image ("cpu_bound") is the rate each single-threaded worker would reach with a core of
its own, an estimate rather than a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "backend/impasto/data/samples/chelsea.png"


def make_images(folder: Path, count: int, size: int) -> None:
    from PIL import Image

    photo = Image.open(SAMPLE).convert("RGB")
    for i in range(count):
        # Different crops, so no run can profit from identical inputs; half of them one folder down.
        x = (i * 37) % max(1, photo.width - size)
        y = (i * 23) % max(1, photo.height - size)
        path = folder / ("nested" if i % 2 else "") / f"img{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        photo.crop((x, y, x + size, y + size)).save(path)


def timed_run(src: Path, workers: int, threads: int | None, ray: str | None, device: str,
              style: str) -> dict[str, float]:
    from impasto.batch.job import BatchJob
    from impasto.batch.run import run_batch
    from impasto.engine.engine import EngineConfig

    job = BatchJob("stylize", {"style": style}, EngineConfig(device=device, bf16=False))
    finished: list[float] = []
    records: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="impasto-bench-out-") as out:
        start = time.perf_counter()
        summary = run_batch(job, src, Path(out), workers=workers, threads=threads, ray=ray,
                            on_record=lambda rec: (finished.append(time.perf_counter()), records.append(rec)))
        wall = time.perf_counter() - start
    if summary.failed or summary.done != len(finished):
        raise RuntimeError(f"benchmark batch failed: {summary.errors[:3]}")
    steady_span = finished[-1] - finished[0]
    return {"images": summary.done, "threads_per_worker": threads or os.cpu_count() or 1,
            "workers_that_did_work": len({r["worker"] for r in records}), "wall_s": round(wall, 3),
            "end_to_end_images_per_s": round(summary.done / wall, 3),
            "first_image_s": round(finished[0] - start, 3),
            "steady_images_per_s": round((len(finished) - 1) / steady_span, 3) if steady_span > 0 else 0.0,
            "median_image_s": round(statistics.median(r["seconds"] for r in records), 4),
            "median_image_cpu_s": round(statistics.median(r["cpu_seconds"] for r in records), 4),
            # Not measured wall time: the rate if each single-threaded worker had a core to itself.
            "cpu_bound_images_per_s": round(workers / statistics.median(r["cpu_seconds"] for r in records), 2)
            if threads == 1 else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=None, help="how many images (default 24; --quick 8)")
    parser.add_argument("--size", type=int, default=None, help="square side, px (default 128; --quick 48)")
    parser.add_argument("--modes", default=None, help="comma-separated: local, ray (default both; --quick local)")
    parser.add_argument("--quick", action="store_true", help="few small images, local mode (smoke test)")
    parser.add_argument("--out-dir", type=Path, default=None, help="folder for batch.json (instead of --out)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--style", default="wave")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "batch.json")
    args = parser.parse_args(argv)
    args.images = args.images or (8 if args.quick else 24)
    args.size = args.size or (48 if args.quick else 128)
    args.modes = args.modes or ("local" if args.quick else "local,ray")
    if args.out_dir:
        args.out = args.out_dir / "batch.json"
    modes = [m for m in args.modes.split(",") if m]
    results: dict[str, dict[str, dict[str, float]]] = {}
    load_before, pressure_before = os.getloadavg()[0], _cpu_pressure()
    with tempfile.TemporaryDirectory(prefix="impasto-bench-in-") as tmp:
        src = Path(tmp)
        make_images(src, args.images, args.size)
        for mode in modes:
            ray_address = None
            if mode == "ray":
                import ray

                ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
                ray_address = "auto"  # already initialised: run_batch uses this instance as it is
            try:
                results[mode] = {}
                runs = [("1", 1, 1), ("2", 2, 1)] + ([("1_all_cores", 1, None)] if mode == "local" else [])
                for key, workers, threads in runs:
                    results[mode][key] = r = timed_run(src, workers, threads, ray_address, args.device, args.style)
                    print(f"{mode:5s} {workers} worker(s) x {r['threads_per_worker']} thread(s): "
                          f"{r['end_to_end_images_per_s']:6.2f} img/s end to end, "
                          f"{r['steady_images_per_s']:6.2f} img/s steady ({r['images']} images in {r['wall_s']} s, "
                          f"first after {r['first_image_s']} s; per image {r['median_image_s']} s, "
                          f"{r['median_image_cpu_s']} CPU s)", flush=True)
            finally:
                if mode == "ray":
                    ray.shutdown()
            one, two = results[mode]["1"], results[mode]["2"]
            for key in ("end_to_end", "steady", "cpu_bound"):
                a, b = one[f"{key}_images_per_s"], two[f"{key}_images_per_s"]
                results[mode][f"scaling_{key}"] = round(b / a, 2) if a else 0.0  # type: ignore[assignment]
            print(f"{mode:5s} scaling 2 vs 1 worker: x{results[mode]['scaling_end_to_end']} end to end, "
                  f"x{results[mode]['scaling_steady']} steady, x{results[mode]['scaling_cpu_bound']} from CPU "
                  f"seconds per image (a core per worker)")
    import torch

    report = {
        "benchmark": "impasto batch stylize throughput (benchmarks/batch_throughput.py)",
        "images": args.images, "size_px": args.size, "style": args.style, "device": args.device,
        "results": results,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "torch": torch.__version__, "ray": _ray_version(),
                    "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                    "cpu_pressure_some_avg60_before_after": [pressure_before, _cpu_pressure()]},
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"load average {report['machine']['load_average_before_after']} on {os.cpu_count()} CPUs; "
          f"wrote {args.out}")
    return 0


def _cpu_pressure() -> float | None:
    """Linux PSI: % of the last minute some runnable task waited for a CPU (None where unsupported)."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return float(line.split("avg60=")[1].split()[0])


def _ray_version() -> str | None:
    try:
        import ray
    except ImportError:
        return None
    return str(ray.__version__)


if __name__ == "__main__":
    sys.exit(main())
