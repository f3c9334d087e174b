"""Ray mode of `impasto batch` (extra `impasto[ray]`): the same tasks, records and atomic outputs as the
local pool, spread over a Ray cluster with Ray Data.

The dataset is the list of file paths, not the pixels: each worker reads its input and writes its output
itself, so images never pass through the driver or the object store, and IN_DIR/OUT_DIR must be on a
filesystem every node sees at the same path. `map_batches` runs a stateful actor class, so each worker
loads its model once: one actor per GPU (`num_gpus=1`), or one per CPU slot. Only the driver writes the
manifest, from the records the actors return.

Ray is imported only when this mode runs, so the package works without it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import numpy as np

from impasto.batch.job import BatchJob, Record, Task, engine_for, failed_record, process, worker_name
from impasto.cancel import CancelToken
from impasto.errors import InvalidArgument

log = logging.getLogger(__name__)

# Ray retries an image whose actor died (node lost, OOM, native crash) on a restarted actor; Ray Data's default
# is to retry forever, which one image that crashes its decoder would turn into a hang.
RETRIES = 2
LOST = f"the worker died on this image {RETRIES + 1} times (out of memory? a crash in a decoder?); rerun to retry"


def import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401  (the extra installs ray[data]; plain ray lacks it)
    except ImportError:
        raise InvalidArgument("--ray needs Ray, which is not installed",
                              hint="install impasto[ray] (pip install 'impasto[ray]'), or leave out --ray "
                                   "to use the local worker pool") from None
    return ray


class ModelActor:
    """One model instance on one device; Ray Data feeds it batches of task rows and collects its records."""

    def __init__(self, job: BatchJob, device: str, threads: int, slots_per_node: int) -> None:
        import torch

        if device == "cpu":
            torch.set_num_threads(threads)  # the CPUs Ray reserved for this actor, so actors do not oversubscribe
        # With num_gpus=1 Ray sets CUDA_VISIBLE_DEVICES to the actor's GPU, so plain "cuda" is that GPU.
        self.engine = engine_for(job.config, device, slots_per_node)
        self.job = job
        self.name = worker_name(device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        records = [process(self.engine, self.job, Task(str(s), str(d), str(r)), self.name)
                   for s, d, r in zip(batch["src"], batch["dst"], batch["rel"], strict=True)]
        return {"record": np.array([json.dumps(r) for r in records], dtype=object)}


def _placement(ray: Any, job: BatchJob, workers: int | None, threads: int) -> tuple[bool, int, int]:
    """(use GPUs, number of actors, CPU slots per node) from what the cluster offers."""
    if job.config.device not in ("auto", "cpu", "cuda"):
        raise InvalidArgument(f"--device {job.config.device} cannot be used with --ray",
                              hint="use auto, cpu or cuda: Ray gives each worker its own GPU")
    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), max(1, int(res.get("CPU", 1)))
    if job.config.device == "cuda" and not gpus:
        raise InvalidArgument("--device cuda, but the Ray cluster has no GPUs", hint="use --device auto or cpu")
    use_gpu = gpus > 0 and job.config.device != "cpu"
    nodes = max(1, sum(1 for n in ray.nodes() if n.get("Alive")))
    return use_gpu, workers or (gpus if use_gpu else max(1, cpus // threads)), max(1, cpus // nodes // threads)


def run_ray(job: BatchJob, tasks: list[Task], address: str, workers: int | None, cancel: CancelToken,
            threads: int = 1) -> Iterator[Record]:
    """Records as images finish. `address` "auto" starts a local Ray instance; otherwise it joins that cluster.
    A Ray already initialised by the caller is used as it is and left running."""
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        if address == "auto":
            ray.init(address="local", include_dashboard=False)
        else:
            ray.init(address=address)
        started = True
    rows: Iterator[dict[str, Any]] | None = None
    ctx = ray.data.DataContext.get_current()
    saved = ctx.enable_progress_bars, ctx.max_errored_blocks
    try:
        ctx.enable_progress_bars = False  # our own bar counts images; Ray's would fight it for the terminal
        ctx.max_errored_blocks = -1  # an image that failed every retry is reported by us; the rest go on
        if not log.isEnabledFor(logging.DEBUG):
            logging.getLogger("ray.data").setLevel(logging.WARNING)
        use_gpu, size, slots = _placement(ray, job, workers, threads)
        # One block per image so that Ray balances single images across actors.
        ds = ray.data.from_items([asdict(t) for t in tasks], override_num_blocks=len(tasks))
        ds = ds.map_batches(
            ModelActor,
            fn_constructor_kwargs={"job": job, "device": "cuda" if use_gpu else "cpu", "threads": threads,
                                   "slots_per_node": slots},
            batch_size=1,
            batch_format="numpy",
            # Two in flight per actor: enough to hide the hand-off, few enough that a cancel leaves little queued.
            compute=ray.data.ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=2),
            num_cpus=1 if use_gpu else threads,  # one CPU slot: `threads` cores
            num_gpus=1 if use_gpu else 0,
            max_task_retries=RETRIES,
        )
        rows = iter(ds.iter_rows())
        seen = set()
        for row in rows:
            rec = json.loads(row["record"])
            seen.add(rec["input"])
            yield rec
            if cancel.cancelled:
                return
        for task in tasks:
            if task.rel not in seen:  # its block errored out after every retry
                yield failed_record(task, LOST, "lost")
    finally:
        ctx.enable_progress_bars, ctx.max_errored_blocks = saved
        close = getattr(rows, "close", None)
        if close is not None:
            close()  # stops the streaming executor, so no worker starts another image after we return
        if started:
            ray.shutdown()
