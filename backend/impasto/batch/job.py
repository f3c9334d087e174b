"""`impasto batch`: stylize or upscale a folder tree, resumably, on a local worker pool or on Ray.

A batch is a list of `Task`s (input file -> output file at the same relative path). Every worker runs the
same `process` step on the same transport-agnostic Engine operations the server uses, and writes its output
atomically (temporary file, then rename), so an output that exists is a finished output. That makes a rerun
cheap and exact: it skips every output that exists, and recomputes nothing else. The JSONL manifest records
each input's outcome; it is written by the driver only, so workers never contend for it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from impasto.cancel import CancelToken
from impasto.errors import Cancelled, ImpastoError, InvalidArgument

if TYPE_CHECKING:  # the engine pulls in torch; the walk and the manifest do not need it
    from impasto.engine.engine import Engine, EngineConfig
    from impasto.engine.pixels import PixelBuffer

log = logging.getLogger(__name__)

FORMATS = {"png": ".png", "jpg": ".jpg", "tif": ".tif", "webp": ".webp"}
MANIFEST_NAME = "impasto-manifest.jsonl"
TMP_MARK = ".impasto-tmp-"  # in temporary output names; a crashed run's leftovers are removed by the next
Record = dict[str, Any]


@dataclass(frozen=True)
class BatchJob:
    """What to do to every image: the operation, its options (Engine keyword arguments) and the engine config."""

    op: str  # "stylize" | "upscale"
    options: dict[str, Any]
    config: EngineConfig
    format: str | None = None  # output format (a FORMATS key); None keeps each input's format

    def settings(self) -> dict[str, Any]:
        """What decides an output's pixels: a rerun into the same folder must not mix two settings."""
        return {"op": self.op, **self.options, "format": self.format}


@dataclass(frozen=True)
class Task:
    src: str  # absolute paths: Ray workers on other nodes have other working directories
    dst: str
    rel: str  # input path relative to IN_DIR, POSIX style: the manifest's key


@dataclass
class Summary:
    done: int = 0
    failed: int = 0
    skipped: int = 0  # finished by an earlier run
    seconds: float = 0.0
    interrupted: bool = False
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


# ---- the walk ----


def plan(in_dir: Path, out_dir: Path, fmt: str | None = None) -> list[Task]:
    """Every image under `in_dir` (sorted, hidden files and `out_dir` itself left out) with its output path."""
    from impasto.engine.imageio import SUFFIXES  # here: `impasto batch --help` imports this module, not torch

    in_dir, out_dir = in_dir.resolve(), out_dir.resolve()
    if not in_dir.is_dir():
        raise InvalidArgument(f"{in_dir}: not a folder", hint="batch takes an input folder and an output folder")
    if out_dir == in_dir:
        raise InvalidArgument("the output folder is the input folder", hint="write the outputs to another folder")
    tasks = []
    for root, dirs, files in os.walk(in_dir):
        here = Path(root)
        # Prune the output folder (when nested in the input) and hidden folders, so outputs never become inputs.
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and here / d != out_dir)
        for name in sorted(files):
            src = here / name
            if name.startswith(".") or src.suffix.lower() not in SUFFIXES:
                continue
            rel = src.relative_to(in_dir)
            dst = out_dir / (rel.with_suffix(FORMATS[fmt]) if fmt else rel)
            tasks.append(Task(str(src), str(dst), rel.as_posix()))
    return sorted(tasks, key=lambda t: t.rel)  # one order whatever the filesystem's: collisions resolve alike


def find_collisions(tasks: list[Task]) -> tuple[list[Task], list[Record]]:
    """With --format, a.png and a.jpg both map to a.jpg: keep the first, report the others."""
    seen: dict[str, str] = {}
    keep, clashes = [], []
    for t in tasks:
        if t.dst in seen:
            clashes.append(make_record(t, "error", error=f"its output {Path(t.dst).name} is also the output of "
                                   f"{seen[t.dst]}; rename one of them or drop --format"))
        else:
            seen[t.dst] = t.rel
            keep.append(t)
    return keep, clashes


# ---- the manifest ----


def read_manifest(path: Path) -> list[Record]:
    """Records of earlier runs. A line cut short by a crash is ignored (its output, if any, is still found)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "input" in rec:
            records.append(rec)
    return records


def make_record(task: Task, status: str, *, seconds: float | None = None, error: str | None = None,
            worker: str | None = None, settings: dict[str, Any] | None = None) -> Record:
    return {"input": task.rel, "output": task.dst, "status": status, "seconds": seconds,
            "time": datetime.now(UTC).isoformat(timespec="seconds"), "error": error, "worker": worker,
            "settings": settings}


# ---- one image ----


def apply(engine: Engine, job: BatchJob, image: PixelBuffer, cancel: CancelToken | None = None) -> PixelBuffer:
    if job.op == "stylize":
        return engine.stylize(image, cancel=cancel, **job.options)
    if job.op == "upscale":
        return engine.upscale(image, cancel=cancel, **job.options)
    raise InvalidArgument(f"unknown batch operation {job.op!r}", hint="use stylize or upscale")


def process(engine: Engine, job: BatchJob, task: Task, worker: str, cancel: CancelToken | None = None) -> Record:
    """Read, run, write atomically, and say how it went. Only a cancel escapes: a bad file never stops a batch."""
    start, cpu = time.perf_counter(), time.process_time()

    def timing() -> dict[str, float]:
        # CPU seconds of this worker process: on a shared machine wall time is mostly the wait for a core.
        return {"seconds": round(time.perf_counter() - start, 4), "cpu_seconds": round(time.process_time() - cpu, 4)}

    from impasto.engine.imageio import read_image, write_image

    dst = Path(task.dst)
    tmp = dst.with_name(f".{dst.stem}{TMP_MARK}{uuid.uuid4().hex[:8]}{dst.suffix}")  # suffix picks the format
    try:
        image, meta = read_image(task.src, max_pixels=job.config.max_pixels)  # refused from its header
        out = apply(engine, job, image, cancel)
        write_image(tmp, out, meta)
        os.replace(tmp, dst)  # atomic on one filesystem: readers see no output or a whole one
        return make_record(task, "done", worker=worker, settings=job.settings()) | timing()
    except Cancelled:
        raise
    except ImpastoError as exc:
        return make_record(task, "error", error=exc.message, worker=worker) | timing()
    except Exception as exc:  # a decoder or engine bug on one file must not cost the rest of the batch
        log.exception("batch: %s failed", task.rel)
        return make_record(task, "error", error=repr(exc), worker=worker) | timing()
    finally:
        tmp.unlink(missing_ok=True)


def worker_name(device: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{device}"


# ---- workers ----


def engine_for(config: EngineConfig, device: str, slots: int) -> Engine:
    from impasto.device import CPU_BUDGET_SHARE, available_memory
    from impasto.engine.engine import Engine

    if device == "cpu" and config.memory_budget is None and slots > 1:
        # Each process would otherwise take the single-process share of free memory.
        config = replace(config, memory_budget=max(256 << 20, int(available_memory() * CPU_BUDGET_SHARE / slots)))
    return Engine(replace(config, device=device))


def failed_record(task: Task, error: str, worker: str) -> Record:
    return make_record(task, "error", error=error, worker=worker)
