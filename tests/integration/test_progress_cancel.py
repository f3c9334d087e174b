"""Whole-image jobs through the real server report progress and stop promptly (issue 13, build item 3).

A 2048x2048 stylize fits the memory budget, so it runs as one whole-image call: the engine must still report
progress during it, a cancel or a deadline must free the worker within about a second, and SIGTERM during it
must end the server cleanly. `--runtime torch` runs the plan step by step (engine/whole.py); the OpenVINO
runtime polls its inference (engine/runtime.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from impasto import errors
from impasto.cancel import CancelToken
from impasto.serve.client import Client
from impasto_serve_proc import Background, ServeProcess, make_image, wait_for

BIG = 2048


class Fractions:
    """Progress sink: the distinct fractions of the "stylize" stage, and when each arrived."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, float]] = []
        self.lock = threading.Lock()

    def __call__(self, stage: str, fraction: float, *_: object) -> None:
        if stage == "stylize" and 0.0 < fraction < 1.0:
            with self.lock:
                if not self.seen or self.seen[-1][1] != fraction:
                    self.seen.append((time.monotonic(), fraction))

    def count(self) -> int:
        with self.lock:
            return len(self.seen)


@pytest.fixture(scope="module")
def server() -> Iterator[ServeProcess]:
    with ServeProcess("--runtime", "torch", "--max-queue", "4") as proc:
        yield proc


@pytest.fixture(scope="module")
def big() -> np.ndarray:
    return make_image(BIG, BIG, "uint8", channels=3)


def small_job_time(client: Client) -> float:
    start = time.monotonic()
    out = client.stylize(make_image(32, 32, "uint8", seed=3), "udnie")
    assert out.shape == (32, 32, 4)
    return time.monotonic() - start


def test_progress_moves_during_a_whole_image_job_and_cancel_frees_the_worker(server: ServeProcess,
                                                                             big: np.ndarray) -> None:
    with Client(server.address) as client:
        small_job_time(client)  # the model loaded, so the next small job measures the queue alone
        fractions, token = Fractions(), CancelToken()
        job = Background(lambda: client.stylize(big, "udnie", progress=fractions, cancel=token))
        wait_for(lambda: fractions.count() >= 3, 120)
        increasing = [f for _, f in fractions.seen]
        assert increasing == sorted(increasing)
        token.cancel()
        cancelled = time.monotonic()
        job.join(30)
        assert isinstance(job.error, errors.Cancelled), job.error
        freed = wait_for(lambda: client.info().queue_length == 0, 10)
        assert freed < 1.5, freed  # within ~1 s of the cancel (plus this poll)
        # a small job submitted right after runs at once, not behind the rest of the big one
        assert time.monotonic() - cancelled + small_job_time(client) < 5


def test_a_deadline_stops_a_whole_image_job(server: ServeProcess, big: np.ndarray) -> None:
    with Client(server.address, timeout=3.0) as client:
        fractions = Fractions()
        start = time.monotonic()
        with pytest.raises(errors.DeadlineExceeded):
            client.stylize(big, "udnie", progress=fractions)
    assert time.monotonic() - start < 6
    with Client(server.address) as client:
        freed = wait_for(lambda: client.info().queue_length == 0, 10)
        assert freed < 1.5, freed
        assert small_job_time(client) < 5
