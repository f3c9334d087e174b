"""The server's job queue: one worker thread per device, so GPU work never runs two jobs at a time.

A gRPC handler submits a job and then blocks on the job's event queue, turning each event into a
response message: "queued" positions while it waits, the engine's progress while it runs, then the
result or the error. Cancellation is cooperative (gRPC cannot interrupt a running handler): the handler
cancels the job's CancelToken when the RPC ends early, a waiting job is then dropped, and a running job
stops at the engine's next `check()` between tiles or iterations.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from impasto.cancel import CancelToken, Progress
from impasto.errors import Cancelled, ImpastoError, ResourceExhausted, Unavailable

log = logging.getLogger(__name__)

# fn(progress, cancel) -> result; runs on the worker thread.
Work = Callable[[Progress, CancelToken], Any]


@dataclass(frozen=True)
class Event:
    """One thing a waiting handler learns about its job."""

    kind: str  # "queued", "progress", "done", "error"
    stage: str = ""
    fraction: float = 0.0
    position: int = 0
    result: Any = None
    error: BaseException | None = None


class Job:
    def __init__(self, work: Work, cancel: CancelToken, name: str) -> None:
        self.work = work
        self.cancel = cancel
        self.name = name
        self.events: queue.Queue[Event] = queue.Queue()
        self._last: tuple[str, float] = ("", -1.0)
        self.queue: JobQueue | None = None  # set by JobQueue.submit

    def progress(self, stage: str, fraction: float) -> None:
        # The engine may report every tile or iteration; forward changes of at least 1% (or a new stage)
        # so a slow client is not flooded, and always the end of a stage.
        last_stage, last_fraction = self._last
        if stage != last_stage or fraction >= 1.0 or fraction - last_fraction >= 0.01:
            self._last = (stage, fraction)
            self.events.put(Event("progress", stage=stage, fraction=float(fraction)))

    def stream(self, poll: float = 0.1) -> Iterator[Event]:
        """Events until (and including) "done" or "error"."""
        while True:
            try:
                event = self.events.get(timeout=poll)
            except queue.Empty:
                if self.cancel.cancelled and self.queue is not None:
                    # Cancelled while waiting: leave the queue now rather than when the worker is next free
                    # (minutes, behind a long job), so the handler ends and the job's images are freed.
                    self.queue.withdraw(self)
                continue
            yield event
            if event.kind in ("done", "error"):
                return


class JobQueue:
    """FIFO of jobs run by one worker thread. `max_queue` bounds jobs waiting or running."""

    def __init__(self, max_queue: int = 8, name: str = "device",
                 after_job: Callable[[bool], None] | None = None) -> None:
        """`after_job(failed)` runs on the worker after each job, e.g. to hand cached GPU memory back."""
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.max_queue = max_queue
        self._after_job = after_job
        self._cond = threading.Condition()
        self._waiting: list[Job] = []
        self._running: Job | None = None
        self._closed = False
        self._worker = threading.Thread(target=self._run, name=f"impasto-worker-{name}", daemon=True)
        self._worker.start()

    def __len__(self) -> int:
        """Jobs waiting or running (a job cancelled while waiting no longer counts)."""
        with self._cond:
            self._drop_cancelled()
            return len(self._waiting) + (self._running is not None)

    def _drop_cancelled(self) -> None:
        # Called with the lock held. A job whose client went away while it waited gives its slot back at
        # once: the worker may be busy for minutes with a running job and cannot be the one to notice.
        for job in [j for j in self._waiting if j.cancel.cancelled]:
            self._waiting.remove(job)
            job.events.put(Event("error", error=Cancelled("the job was cancelled while queued")))

    def check_open(self) -> None:
        """Raise Unavailable once shutdown has begun (lets a handler refuse before the pixels arrive)."""
        if self._closed:
            raise Unavailable("the server is shutting down", hint="start `impasto serve` again")

    def submit(self, work: Work, cancel: CancelToken, name: str = "job") -> Job:
        """Queue a job; raises ResourceExhausted when the queue is full, Unavailable when shutting down."""
        job = Job(work, cancel, name)
        job.queue = self
        with self._cond:
            self.check_open()
            self._drop_cancelled()
            ahead = len(self._waiting) + (self._running is not None)
            if ahead >= self.max_queue:
                raise ResourceExhausted(
                    f"the job queue is full ({self.max_queue} jobs waiting or running)",
                    hint="try again when the current jobs finish, or start the server with a larger --max-queue",
                )
            self._waiting.append(job)
            job.events.put(Event("queued", stage="queued", position=ahead))
            self._cond.notify_all()
        return job

    def withdraw(self, job: Job) -> None:
        """Drop `job` if it is still waiting and was cancelled (a running job stops at its next check)."""
        with self._cond:
            if job in self._waiting and job.cancel.cancelled:
                self._drop_cancelled()
                self._cond.notify_all()

    def _next(self) -> Job | None:
        with self._cond:
            while True:
                # Jobs whose client went away while waiting are dropped without running.
                self._drop_cancelled()
                if self._waiting:
                    job = self._waiting.pop(0)
                    self._running = job
                    for i, other in enumerate(self._waiting):
                        other.events.put(Event("queued", stage="queued", position=i + 1))
                    return job
                if self._closed:
                    return None
                # Wake now and then to drop jobs cancelled while waiting.
                self._cond.wait(timeout=0.2)

    def _run(self) -> None:
        while (job := self._next()) is not None:
            started = time.monotonic()
            failed = True
            try:
                job.cancel.check()
                result = job.work(job.progress, job.cancel)
                job.events.put(Event("done", result=result))
                failed = False
            except BaseException as exc:  # delivered to the handler, which maps it (bugs become INTERNAL)
                if isinstance(exc, ImpastoError):
                    # Nobody shows a domain error's traceback, and its frames hold the job's tensors.
                    exc = exc.with_traceback(None)
                job.events.put(Event("error", error=exc))
            finally:
                log.info("%s finished in %.2f s", job.name, time.monotonic() - started)
                with self._cond:
                    self._running = None
                    self._cond.notify_all()
            # Drop this thread's references to the job (its work closure holds the images) before the hook,
            # so a cancelled job's memory can actually be released.
            job = result = None
            if self._after_job is not None:
                try:
                    self._after_job(failed)
                except Exception:
                    log.exception("after-job hook failed")

    def shutdown(self, grace: float) -> None:
        """Refuse new jobs, let queued and running ones finish for up to `grace` seconds, then cancel them
        and wait (a running job stops at its next tile or iteration)."""
        end = time.monotonic() + grace
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            while (self._waiting or self._running) and time.monotonic() < end:
                self._cond.wait(timeout=max(0.0, min(0.1, end - time.monotonic())))
            for job in [*self._waiting, *([self._running] if self._running else [])]:
                job.cancel.cancel()
            self._cond.notify_all()
        self._worker.join(timeout=30)
