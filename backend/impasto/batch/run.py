"""The batch driver: plan a folder job, resume from its manifest, run the work on a local pool or Ray, and
record every outcome (JSON lines) as it arrives."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from impasto.batch.job import (
    MANIFEST_NAME,
    TMP_MARK,
    BatchJob,
    Record,
    Summary,
    Task,
    find_collisions,
    make_record,
    plan,
    read_manifest,
)
from impasto.cancel import CancelToken
from impasto.engine.imageio import SUFFIXES
from impasto.errors import InvalidArgument, ResourceExhausted

MIN_FREE = 1 << 20  # bytes the output disk must have free before a batch starts


def run_batch(job: BatchJob, in_dir: Path, out_dir: Path, *, workers: int | None = None, threads: int | None = None,
              ray: str | None = None,
              manifest: Path | None = None, overwrite: bool = False, progress: bool = False,
              cancel: CancelToken | None = None, on_record: Callable[[Record], None] | None = None) -> Summary:
    """Process every image under `in_dir` into `out_dir`; with `ray`, on a Ray cluster ("auto": a local one)."""
    cancel = cancel or CancelToken()
    check_out_dir(out_dir)
    out_dir = out_dir.resolve()
    manifest = (manifest or out_dir / MANIFEST_NAME).resolve()
    tasks, clashes = find_collisions(plan(in_dir, out_dir, job.format))
    if not tasks and not clashes:
        raise InvalidArgument(f"no images found in {in_dir}", hint=f"supported: {', '.join(sorted(SUFFIXES))}")
    earlier = read_manifest(manifest)
    finished = {r["input"] for r in earlier if r.get("status") == "done"}
    if not overwrite:
        _check_settings(earlier, job, manifest)
    check_output(out_dir, manifest)  # a full disk or a folder we cannot write: say so before any work
    _remove_leftovers(out_dir)
    summary = Summary()
    todo, recovered = [], []
    for t in tasks:
        if overwrite or not Path(t.dst).exists():
            todo.append(t)
        else:
            summary.skipped += 1
            if t.rel not in finished:  # written by a run that died before it could say so
                recovered.append(make_record(t, "done", worker="found", settings=job.settings()))
    start = time.perf_counter()
    with manifest.open("a", encoding="utf-8") as log_file, _bar(progress, len(todo)) as bar:
        if log_file.tell() and not manifest.read_bytes().endswith(b"\n"):
            log_file.write("\n")  # a line cut by a crash must not swallow the first record of this run

        def note(rec: Record) -> None:
            log_file.write(json.dumps(rec) + "\n")
            log_file.flush()  # a crash loses at most the line being written
            if rec["status"] != "done":
                summary.failed += 1
                summary.errors.append((rec["input"], rec["error"]))
            if on_record is not None:
                on_record(rec)

        for rec in [*recovered, *clashes]:
            note(rec)
        for rec in _execute(job, todo, workers, threads, ray, cancel):
            summary.done += rec["status"] == "done"
            note(rec)
            bar.update(1)
            bar.set_postfix(failed=summary.failed, refresh=False)
    summary.seconds = time.perf_counter() - start
    summary.interrupted = summary.done + summary.failed - len(clashes) < len(todo)
    return summary


def check_out_dir(out_dir: Path) -> None:
    """OUT_DIR must be a folder: refuse a file, or a new name that looks like one (`batch in/ out.jpg` would
    otherwise make a folder called out.jpg)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidArgument(f"{out_dir} is a file, but batch writes into a folder",
                              hint="give a folder as OUT_DIR (it is created when missing)")
    if not out_dir.exists() and out_dir.suffix.lower() in SUFFIXES:
        raise InvalidArgument(f"{out_dir} looks like an image file name, but batch writes into a folder",
                              hint=f"give a folder as OUT_DIR, e.g. {out_dir.with_suffix('')}")


def _execute(job: BatchJob, todo: list[Task], workers: int | None, threads: int | None, ray: str | None,
             cancel: CancelToken) -> Iterable[Record]:
    if not todo:
        return []
    if ray:
        from impasto.batch import ray_cluster as batch_ray

        return batch_ray.run_ray(job, todo, ray, workers, cancel, threads or 1)
    from impasto.batch.local import run_local

    return run_local(job, todo, workers, cancel, threads)


def _check_settings(earlier: list[Record], job: BatchJob, manifest: Path) -> None:
    mine = job.settings()
    for rec in earlier:
        theirs = rec.get("settings")
        if rec.get("status") == "done" and theirs and theirs != mine:
            raise InvalidArgument(
                f"{manifest.parent} holds outputs made with other settings ({_diff(theirs, mine)})",
                hint="use another output folder, or --overwrite to redo every image with these settings")


def _diff(theirs: dict[str, Any], mine: dict[str, Any]) -> str:
    keys = sorted(set(theirs) | set(mine), key=str)
    return ", ".join(f"{k} {theirs.get(k)!r} then, {mine.get(k)!r} now" for k in keys if theirs.get(k) != mine.get(k))


def check_output(out_dir: Path, manifest: Path) -> None:
    """Make the output folder and prove it writable: a real write, flushed to disk, plus room to spare.
    Without this a full disk or a read-only folder shows up only after the first image, as an internal error."""
    probe = out_dir / f".probe{TMP_MARK}{os.getpid()}"  # named like a temporary output: a crash leaves no litter
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        manifest.parent.mkdir(parents=True, exist_ok=True)
        with manifest.open("a", encoding="utf-8"):
            pass
        with open(probe, "wb") as f:
            f.write(bytes(64 << 10))
            f.flush()
            os.fsync(f.fileno())  # some filesystems report a full disk only when the blocks are allocated
        free = shutil.disk_usage(out_dir).free
    except OSError as exc:
        where = exc.filename or out_dir
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ResourceExhausted(f"no space left to write outputs in {out_dir}",
                                    hint="free some space, or choose an output folder on another disk") from None
        raise InvalidArgument(f"cannot write outputs to {where}: {exc.strerror or exc}",
                              hint="choose an output folder you can write to") from None
    finally:
        with contextlib.suppress(OSError):  # nothing to remove when the folder could not even be made
            probe.unlink(missing_ok=True)
    if free < MIN_FREE:
        raise ResourceExhausted(f"only {free:,} bytes free on the disk of {out_dir}",
                                hint="free some space, or choose an output folder on another disk")


def _remove_leftovers(out_dir: Path) -> None:
    for p in out_dir.rglob(f"*{TMP_MARK}*"):
        if p.is_file() and p.name.startswith("."):
            p.unlink(missing_ok=True)


def _bar(enabled: bool, total: int) -> Any:
    import sys

    from tqdm import tqdm

    # tqdm's rate and remaining time are the throughput and ETA over images, not over tiles.
    return tqdm(total=total, unit="img", desc="batch", file=sys.stderr, dynamic_ncols=True, smoothing=0.1,
                disable=not enabled)
