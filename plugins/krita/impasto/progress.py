"""What the docker says while a job runs: the stage, how far it is and how long is left, from the
backend's progress events (stage, fraction of the stage, jobs ahead in the queue). Pure Python.

Time left comes from the rate the fraction has been growing since the stage began; until a stage
reports a fraction above zero (a whole-image pass reports only its end) the docker says "working…" with
the time spent so far, and the bar is indeterminate."""

from __future__ import annotations

from dataclasses import dataclass

from impasto_common import LOADING, QUEUED

STAGES = {QUEUED: "Waiting in the queue", LOADING: "Loading the model", "stylize": "Stylizing",
          "upscale": "Upscaling", "refine": "Refining", "receive": "Receiving", "send": "Sending"}
MIN_SECONDS_FOR_ESTIMATE = 1.0  # a rate from a fraction of a second of work swings too much to show


def duration(seconds: float) -> str:
    """"8 s", "1 min 20 s", "12 min": rounded the way a person would say it."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    minutes, s = divmod(s, 60)
    if minutes >= 10:
        return f"{minutes + (s >= 30)} min"
    return f"{minutes} min {s} s" if s else f"{minutes} min"


@dataclass(frozen=True)
class Report:
    """One line for the label and the bar's value: percent None means an indeterminate bar."""

    text: str
    percent: int | None


class ProgressTracker:
    """Fed each event with its time; `report(now)` says where the job stands at `now`."""

    def __init__(self, title: str, now: float) -> None:
        self.title = title  # what the job is, e.g. "Applying The Scream"
        self.started = now
        self.stage = ""
        self.position = 0
        self.fraction = 0.0
        self._first: tuple[float, float] | None = None  # (time, fraction) of the stage's first event
        self._last: tuple[float, float] | None = None  # and of its latest

    def update(self, stage: str, fraction: float, position: int, now: float) -> None:
        self.position = position
        self.fraction = min(1.0, max(0.0, fraction))
        if stage != self.stage:
            self.stage = stage
            self._first = (now, self.fraction)  # the rate is measured from the stage's first event
        self._last = (now, self.fraction)

    def seconds_left(self, now: float) -> float | None:
        """From the stage's rate so far; None until there is enough to go on."""
        if self._first is None or self._last is None or self.stage in (QUEUED, LOADING):
            return None
        (t0, f0), (t1, f1) = self._first, self._last
        if f1 <= f0 or t1 - t0 < MIN_SECONDS_FOR_ESTIMATE:
            return None
        rate = (f1 - f0) / (t1 - t0)
        return max(0.0, (1.0 - f1) / rate - (now - t1))

    def report(self, now: float) -> Report:
        elapsed = duration(now - self.started)
        if not self.stage:
            return Report(f"{self.title}… {elapsed}", None)
        label = STAGES.get(self.stage, self.stage.capitalize())
        if self.stage == QUEUED:
            ahead = f" ({self.position} ahead)" if self.position else ""
            return Report(f"{label}{ahead}… {elapsed}", None)
        if self.stage == LOADING or self.fraction <= 0.0:
            return Report(f"{label}: working… {elapsed}", None)
        percent = round(self.fraction * 100)
        left = self.seconds_left(now)
        if left is None:
            return Report(f"{label}… {percent}%", percent)
        if left < 1.0:
            return Report(f"{label}… {percent}%, almost done", percent)
        return Report(f"{label}… {percent}%, about {duration(left)} left", percent)
