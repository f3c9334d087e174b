"""Cancellation and progress, shared by the CLI, the server and batch jobs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from impasto.errors import Cancelled, DeadlineExceeded

# progress(stage, fraction in [0, 1])
Progress = Callable[[str, float], None]


class CancelToken:
    """A flag checked between tiles and iterations. gRPC cannot interrupt a running handler, so work
    polls this instead. An optional deadline (time.monotonic() seconds) is checked at the same points."""

    def __init__(self, deadline: float | None = None) -> None:
        self._event = threading.Event()
        self.deadline = deadline

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("the job was cancelled")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DeadlineExceeded("the job ran past its deadline")


def no_progress(stage: str, fraction: float) -> None:
    """Progress sink that ignores everything."""
