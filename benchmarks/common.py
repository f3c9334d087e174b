"""Shared plumbing for the benchmark scripts: timing, peak memory, machine description, JSON and PNG output.

Every figure a script reports is the median of several timed runs after untimed warm-up runs (the first
call pays for allocator growth, oneDNN primitive creation and, on CUDA, kernel selection). Each report
names the machine and records the load average, because on a shared machine wall time is partly the queue
for a core."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "docs" / "benchmarks"
SHARED = ROOT.parent / "shared" / "data"

# The scripts are run as files (python benchmarks/NAME.py) and imported by the smoke test; both need the
# backend importable without an installed package.
if str(ROOT / "backend") not in sys.path:
    sys.path.insert(0, str(ROOT / "backend"))


def parser(description: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes and few runs (smoke test, seconds)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--out-dir", type=Path, default=OUT_DIR, help="where NAME.json and NAME.png go")
    p.add_argument("--runs", type=int, default=None, help="timed runs per figure (default: per script)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice, one per core); recorded in the JSON")
    return p


# ---- machine ----


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
    except OSError:
        pass
    return []


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def device_name(device: str) -> str:
    """The name printed beside every figure: the card for CUDA, the CPU model and core count otherwise."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{cpu_name()} ({os.cpu_count()} CPUs, {' '.join(cpu_flags()) or 'no bf16 flags'})"


def machine(device: str) -> dict[str, Any]:
    import torch

    return {
        "device": device,
        "device_name": device_name(device),
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_1min": load_average(),
    }


@contextmanager
def quick_threads(quick: bool, threads: int | None = None) -> Iterator[None]:
    """Set torch's thread count for one script run (`threads`, or 1 for --quick), restored after. The smoke
    test runs the scripts on tiny tensors, where a second thread buys nothing; on a machine whose cores are
    oversubscribed, a parallel region also waits for both threads to be scheduled, which made the tiny runs
    2-3x slower in wall time."""
    import torch

    before = torch.get_num_threads()
    if threads or quick:
        torch.set_num_threads(threads or 1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---- timing and memory ----


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak memory above the level at entry, in bytes.

    CUDA: the caching allocator's own high-water mark. CPU: resident set size sampled every few ms from a
    background thread (torch ops release the GIL, so the sampler runs while they compute; tensors over
    glibc's mmap threshold go back to the OS when freed, so the RSS tracks them). A sample can miss a
    peak shorter than the interval, so the CPU figure is a lower bound, good to a few percent here."""

    def __init__(self, device: str, interval: float = 0.004):
        self.device, self.interval = device, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        elif Path("/proc/self/statm").exists():
            self._base = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes() - self._base)
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self._base
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss_bytes() - self._base)


def measure(fn: Callable[[], Any], device: str, runs: int, warmup: int = 1,
            max_s: float | None = None) -> dict[str, Any]:
    """Median wall time of `runs` calls after `warmup` untimed ones, and the peak memory of the timed calls.
    With `max_s`, no further timed call starts once the timed calls so far took that long (at least one runs):
    the slow rows of a slow machine get fewer runs, and each row's count is reported beside its median.
    Returns {"median_s", "all_s", "cpu_s", "peak_mib", "result"} (the last call's return value). cpu_s is the
    median process CPU time (all threads) per call: on an oversubscribed machine wall time is partly the wait
    for a core and this is not (though OpenMP threads spinning at a barrier do count)."""
    result = None
    for _ in range(warmup):
        result = fn()
        sync(device)
    times: list[float] = []
    cpu: list[float] = []
    peak = 0
    for _ in range(runs):
        if times and max_s is not None and sum(times) >= max_s:
            break
        result = None  # drop the previous output so it does not count towards this call's peak
        with PeakMemory(device) as mem:
            start, cpu_start = time.perf_counter(), time.process_time()
            result = fn()
            sync(device)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - cpu_start)
        peak = max(peak, mem.peak)
    return {"median_s": statistics.median(times), "all_s": times, "cpu_s": statistics.median(cpu),
            "peak_mib": peak / 2**20, "result": result}


# ---- output ----


def write_json(out_dir: Path, name: str, report: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {_show(path)}")
    return path


def publish(out_dir: Path, name: str, report: dict[str, Any], loads: tuple[float, float],
            draw: Callable[[Any, dict[str, Any]], None]) -> None:
    """Stamp the report (load averages before and after, time) and write NAME.json and NAME.png, drawn by
    `draw(plt, report)`."""
    report["load_average_before_after"] = list(loads)
    report["measured"] = stamp()
    write_json(out_dir, name, report)
    save_plot(out_dir, name, lambda plt: draw(plt, report))


def save_plot(out_dir: Path, name: str, draw: Callable[[Any], None]) -> Path | None:
    """Draw with matplotlib (headless) into NAME.png. matplotlib is optional: without it the JSON still gets
    written and the script says why the plot is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.png"
    draw(plt)
    plt.savefig(path, dpi=110, bbox_inches="tight")
    plt.close("all")
    print(f"wrote {_show(path)}")
    return path


def _show(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def square(path: str, size: int) -> Any:
    """A photo from the shared data (`path` under ../shared/data) resized to size x size: a (1, 3, size, size)
    float32 RGB 0-255 tensor, so instance norms see natural-image statistics."""
    import numpy as np
    import torch
    from PIL import Image

    with Image.open(SHARED / path) as im:
        arr = np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())[None]


def bar_plot(plt: Any, report: dict[str, Any], title: str) -> None:
    """One horizontal bar per row (its median latency), top to bottom in the rows' order, titled
    `title` and where the figures were taken."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = [r["config"] for r in report["rows"]]
    ax.barh(names, [r["median_s"] for r in report["rows"]])
    ax.set_xlabel("median latency (s)")
    ax.invert_yaxis()
    ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(f"{title}, {where(report)}", fontsize=9)


def where(report: dict[str, Any]) -> str:
    """The machine line of a plot title: device, torch threads on CPU, load average at the start."""
    m = report["machine"]
    threads = "" if m["device"].startswith("cuda") else f", {m['torch_threads']} torch threads"
    return f"{m['device_name']}{threads}, load {report['load_average_before_after'][0]:.1f}"


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")
