"""Local mode of `impasto batch`: a pool of worker processes on this machine, one model instance each.

One worker per GPU; without a GPU, one single-threaded worker per core by default, bounded by memory.
A single worker runs in the calling process. A worker process that dies (the kernel's OOM killer, a
native crash in a decoder) costs the images it had in hand, which are recorded as failed and retried by the
next run, and the pool is started again for the rest: it never stops the batch. Workers end with the driver,
however it ends (`die_with`), so a killed batch leaves no orphans holding memory."""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from impasto.batch.job import BatchJob, Record, Task, engine_for, failed_record, process, worker_name
from impasto.cancel import CancelToken
from impasto.engine.engine import EngineConfig
from impasto.errors import Cancelled

log = logging.getLogger(__name__)

WORKER_MEMORY = 1 << 30  # rough working set of one CPU worker: torch, the model, one image, tiles (bytes)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_POLL = 0.5  # seconds between the watchdog's looks at the parent process
LOST = "the worker process died while this image was in hand (out of memory? a crash in a decoder?); rerun to retry"


def local_slots(config: EngineConfig, workers: int | None) -> list[str]:
    """One device name per worker: one model instance per GPU; on CPU, bounded by cores and memory."""
    import torch

    from impasto.device import available_memory

    if config.device in ("auto", "cuda") and torch.cuda.is_available():
        gpus = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return gpus[: workers or len(gpus)]
    if config.device not in ("auto", "cpu"):
        return [config.device]  # one named accelerator: one model instance
    cap = max(1, min(os.cpu_count() or 1, available_memory() // WORKER_MEMORY))
    if workers and workers > cap:
        log.warning("batch: %d workers asked for, %d fit this machine's cores and memory", workers, cap)
    # Default: one single-threaded worker per core. Images are independent, so processes scale with no
    # synchronisation, while intra-op threads wait on each other at every layer (badly so on a busy machine).
    return ["cpu"] * min(workers or cap, cap)


def cpu_threads(workers: int, threads: int | None) -> int:
    """Torch threads per CPU worker: as asked, else the cores shared out (so --workers 1 still uses them all)."""
    return threads or max(1, (os.cpu_count() or 1) // workers)


def run_local(job: BatchJob, tasks: list[Task], workers: int | None, cancel: CancelToken,
              threads: int | None = None) -> Iterator[Record]:
    """Records as images finish. A cancel stops new work; images already started are finished and reported."""
    slots = local_slots(job.config, workers)
    threads = cpu_threads(len(slots), threads)
    if len(slots) > 1:
        yield from _pool(job, deque(tasks), slots, threads, cancel)
        return
    import torch

    engine = engine_for(job.config, slots[0], 1)
    name = worker_name(slots[0])
    before = torch.get_num_threads()
    if slots[0] == "cpu":
        torch.set_num_threads(threads)
    try:
        for task in tasks:
            if cancel.cancelled:
                return
            yield process(engine, job, task, name, cancel)
    except Cancelled:
        return
    finally:
        torch.set_num_threads(before)  # in-process: leave the caller's setting as it was


_WORKER: dict[str, Any] = {}


def die_with(driver: int) -> None:
    """End this process when the process `driver` ends, however it ends (SIGKILL included): a worker left
    behind would hold a model and an image (a gigabyte or more) with nobody to take its results.

    Linux: the kernel sends SIGKILL when the parent dies (prctl PR_SET_PDEATHSIG). Everywhere, as well: a
    thread that notices the parent is gone (the process is re-parented) and exits. If the driver died before
    this ran, the worker exits now."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still ends it
    if os.getppid() != driver:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == driver:
            time.sleep(PARENT_POLL)
        os._exit(1)

    threading.Thread(target=watch, name="impasto-driver-watch", daemon=True).start()


def _init_worker(job: BatchJob, devices: mp.Queue, threads: int, slots: int, driver: int) -> None:
    die_with(driver)
    # Ctrl-C goes to the whole process group: the driver decides, workers finish the image they are on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    device = devices.get()
    if device == "cpu":
        import torch

        torch.set_num_threads(threads)  # N workers share the cores instead of each using all of them
    _WORKER.update(job=job, engine=engine_for(job.config, device, slots), name=worker_name(device))


def _work(task: Task) -> Record:
    return process(_WORKER["engine"], _WORKER["job"], task, _WORKER["name"])


def _pool(job: BatchJob, todo: deque[Task], slots: list[str], threads: int, cancel: CancelToken) -> Iterator[Record]:
    ctx = mp.get_context("spawn")  # fork would copy torch's thread pools and locks mid-use
    while todo and not cancel.cancelled:
        devices: mp.Queue = ctx.Queue()  # each new process takes one device name
        for d in slots:
            devices.put(d)
        pool = ProcessPoolExecutor(len(slots), mp_context=ctx, initializer=_init_worker,
                                   initargs=(job, devices, threads, len(slots), os.getpid()))
        running: dict[Future[Record], Task] = {}
        broken = False
        try:
            while True:
                # Keep each worker one image ahead, no more, so a cancel or a crash leaves little in hand.
                while todo and not broken and not cancel.cancelled and len(running) < 2 * len(slots):
                    task = todo.popleft()
                    try:
                        running[pool.submit(_work, task)] = task
                    except BrokenProcessPool:
                        todo.appendleft(task)
                        broken = True
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for f in finished:
                    task = running.pop(f)
                    try:
                        yield f.result()
                    except BrokenProcessPool:
                        broken = True
                        yield failed_record(task, LOST, "lost")
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            _drain(devices)
        if not broken:
            return
        log.warning("batch: a worker process died; starting the pool again for the %d images left", len(todo))


def _drain(q: mp.Queue) -> None:
    try:
        while True:
            q.get_nowait()
    except (queue.Empty, OSError, ValueError):
        pass
    q.close()
