"""Peak memory (RSS) of one forced-tiled stylize, each run in a fresh child process.

    .venv/bin/python benchmarks/tiled_memory.py [--size N] [--tile N] [--runtimes torch,openvino] [--backend DIR]

Each child builds an Engine (device cpu, force_tiles, the engine's default precision) and stylizes one size x size
RGB8 image, as `impasto stylize --force-tiles` would; the parent reads that child's peak resident set size
(ru_maxrss of its rusage, from os.wait4) and its wall time. The peak includes the interpreter, torch, OpenVINO
and the model (about 0.6 GB here), the child's own test image and the result buffer. Where the tiled path
spills its layers, the engine also streams the network's input from the buffer and encodes the result band by
band (tiling.streamed_input), so no whole-size float32 copy of the image exists. Issue 13's goal: an 8192x8192
stylize within 3 GB.
`--backend DIR` runs another checkout's backend (e.g. the main branch, for a before/after figure)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common

CHILD = """
import json, sys, time
import numpy as np
from impasto.engine.engine import Engine, EngineConfig
from impasto.engine.pixels import PixelBuffer, PixelFormat
size, tile, runtime, style = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
budget = int(float(sys.argv[5]) * 2**30) if sys.argv[5] else None
# the pixel limit raised to the size asked for: 8192x8192 (the goal's size) is over the default 64 MP
engine = Engine(EngineConfig(device="cpu", runtime=runtime, force_tiles=True, tile_size=tile, memory_budget=budget,
                             max_pixels=max(size * size, 64_000_000)))
small = PixelBuffer(np.full((64, 64, 3), 100, np.uint8), PixelFormat.parse("RGB_U8"))
engine.stylize(small, style)  # model load, conversion (cached) and first-call set-up, not timed
# made in place, in uint8: the peak RSS is the lifetime high-water mark, so int64 index grids here (3 GB at
# 8192x8192) would be counted as the engine's
img = np.empty((size, size, 3), np.uint8)
ramp = (np.arange(size) * 255 // size).astype(np.uint8)
img[:, :, 0], img[:, :, 1] = ramp[None, :], ramp[:, None]
cols = np.arange(size, dtype=np.int64)
for y in range(size):
    img[y, :, 2] = (cols + y) % 256
start = time.perf_counter()
engine.stylize(PixelBuffer(img, PixelFormat.parse("RGB_U8")), style)
print(json.dumps({"seconds": time.perf_counter() - start, "runtime": engine.runtime}))
"""


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--size", type=int, default=None, help="image side (default 2048; --quick: 96)")
    p.add_argument("--tile", type=int, default=None, help="tile side (default 512; --quick: 32)")
    p.add_argument("--runtimes", default="torch,openvino", help="comma-separated (default torch,openvino)")
    p.add_argument("--model", default="starry-night", help="bundled style (default starry-night)")
    p.add_argument("--memory-budget", type=float, default=None,
                   help="GiB of working memory (the engine's --memory-budget; default: the engine's, from free RAM); "
                   "the tiled path keeps layers over a quarter of it in a temporary file")
    p.add_argument("--backend", type=Path, default=common.ROOT / "backend", help="the backend folder to run")
    args = p.parse_args(argv)
    size, tile = args.size or (96 if args.quick else 2048), args.tile or (32 if args.quick else 512)
    load_before = common.load_average()
    print(f"tiled stylize peak RSS on {common.device_name('cpu')}; load average {load_before:.1f}; {args.model}, "
          f"{size}x{size} in {tile} px tiles; backend {args.backend}")
    env = {**os.environ, "PYTHONPATH": str(args.backend)}
    if args.quick or args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads or 1)
    rows: list[dict[str, Any]] = []
    for name in args.runtimes.split(","):
        started = time.perf_counter()
        with tempfile.TemporaryFile("w+") as err:
            child = subprocess.Popen([sys.executable, "-c", CHILD, str(size), str(tile), name, args.model,
                                      "" if args.memory_budget is None else str(args.memory_budget)], env=env,
                                     stdout=subprocess.PIPE, stderr=err, text=True)
            assert child.stdout is not None
            out = child.stdout.read()  # to the child's exit
            # this child's own rusage (getrusage(RUSAGE_CHILDREN) would give the largest of all children so far)
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
            wall = time.perf_counter() - started
            if child.returncode != 0:
                err.seek(0)
                print(f"{name}: failed\n{err.read()[-2000:]}")
                return 1
        result = json.loads(out.strip().splitlines()[-1])
        row = {"config": name, "ran_on": result["runtime"], "stylize_s": result["seconds"], "process_s": wall,
               "peak_rss_mib": usage.ru_maxrss / 1024}  # KiB on Linux
        rows.append(row)
        print(f"{name:>9} (ran on {row['ran_on']}): stylize {row['stylize_s']:.2f} s, process {wall:.1f} s, "
              f"peak RSS {row['peak_rss_mib']:.0f} MiB")
    load_after = common.load_average()
    print(f"load average before/after: {load_before:.1f} / {load_after:.1f} on {os.cpu_count()} CPUs")
    report = {"what": "peak RSS of one forced-tiled stylize in a child process", "machine": common.machine("cpu"),
              "model": args.model, "size": size, "tile": tile,
              "memory_budget_gib": args.memory_budget, "backend": str(args.backend), "rows": rows,
              "load_average_before_after": [load_before, load_after], "measured": common.stamp()}
    common.write_json(args.out_dir, "tiled_memory", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
