"""Background jobs polled from the GUI thread.

Network calls run on a worker thread; Krita's API may only be touched from the GUI thread. So a job
never calls back into the GUI: it puts events on a queue, and the GUI drains the queue from a QTimer
(or, in headless tests, from a plain loop). This keeps the threading rule in one place and makes the
plugin logic testable without Qt."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from impasto_common import DONE, ERROR, PROGRESS, Progress

Work = Callable[[Progress, threading.Event], Any]


@dataclass(frozen=True)
class Event:
    """PROGRESS (stage, fraction, position), then DONE (result) or ERROR (error): the backend's words."""

    kind: str
    stage: str = ""
    fraction: float = 0.0
    position: int = 0
    result: Any = None
    error: BaseException | None = None


class Job:
    """Runs `work(progress, cancel_event)` on a daemon thread; `poll()` returns what happened since."""

    def __init__(self, name: str, work: Work) -> None:
        self.name = name
        self.cancel_event = threading.Event()
        self._events: queue.Queue[Event] = queue.Queue()
        self._finished = False
        self._thread = threading.Thread(target=self._run, args=(work,), name=f"impasto-{name}", daemon=True)

    def start(self) -> Job:
        self._thread.start()
        return self

    def cancel(self) -> None:
        self.cancel_event.set()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    @property
    def finished(self) -> bool:
        """True once poll() has returned the final event."""
        return self._finished

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def poll(self) -> list[Event]:
        events: list[Event] = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            events.append(event)
            if event.kind != PROGRESS:
                self._finished = True
        return events

    def _run(self, work: Work) -> None:
        def progress(stage: str, fraction: float, position: int) -> None:
            self._events.put(Event(PROGRESS, stage, float(fraction), int(position)))

        try:
            result = work(progress, self.cancel_event)
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the GUI, not die in a thread
            self._events.put(Event(ERROR, error=exc))
        else:
            self._events.put(Event(DONE, result=result))
