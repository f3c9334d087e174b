"""Jobs through the real server: cancelling mid-job, deadlines, and many clients against a bounded queue."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from impasto import errors
from impasto.cancel import CancelToken
from impasto.engine.pixels import PixelBuffer
from impasto.serve.client import Client
from impasto_serve_proc import (
    Background,
    RefineTimes,
    ServeProcess,
    direct_engine,
    import_plugin_client,
    make_image,
    wait_for,
)

impasto_client = import_plugin_client()

MAX_QUEUE = 9


@pytest.fixture(scope="module")
def server() -> Iterator[ServeProcess]:
    with ServeProcess("--max-queue", str(MAX_QUEUE)) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(server: ServeProcess) -> Iterator[Client]:
    with Client(server.address) as c:
        yield c


def test_cancel_mid_job_stops_within_an_iteration_and_the_next_job_runs(client: Client) -> None:
    image, times, token = make_image(24, 32, "uint8"), RefineTimes(), CancelToken()
    job = Background(lambda: client.stylize(image, "udnie", refine=1000, progress=times, cancel=token))
    assert times.refining.wait(120)
    wait_for(lambda: len(times.times) >= 4, 60)  # a few iterations, to know how long one takes
    token.cancel()
    stopped = wait_for(lambda: client.info().queue_length == 0, 60)
    job.join()
    assert isinstance(job.error, errors.Cancelled)
    # Stopping waits for the iteration in progress only (plus the cancel watcher's and this poll's 50 ms).
    assert stopped < times.iteration() * 2 + 1.5, (stopped, times.iteration())
    small = make_image(16, 16, "uint8", seed=5)
    np.testing.assert_array_equal(client.stylize(small, "wave"),
                                  direct_engine().stylize(PixelBuffer.from_array(small), "wave").array)


def test_plugin_client_cancel(server: ServeProcess, client: Client) -> None:
    plugin, times, cancel = impasto_client.ImpastoClient(server.address), RefineTimes(), threading.Event()
    data = make_image(24, 32, "uint8").tobytes()
    job = Background(lambda: plugin.stylize(data, 32, 24, "RGBA_U8", "udnie", refine=1000, progress=times,
                                            cancel=cancel))
    assert times.refining.wait(120)
    cancel.set()
    job.join(10)
    assert isinstance(job.error, impasto_client.OperationCancelled)
    wait_for(lambda: client.info().queue_length == 0, 30)


def test_deadline_stops_the_job(server: ServeProcess) -> None:
    with Client(server.address, timeout=3.0) as hurried:
        start = time.monotonic()
        with pytest.raises(errors.DeadlineExceeded):
            hurried.stylize(make_image(96, 128, "uint8"), "udnie", refine=1000)  # far longer than 3 s
        assert time.monotonic() - start < 10
    with Client(server.address) as c:
        wait_for(lambda: c.info().queue_length == 0, 30)  # the server stopped the job too
    plugin = impasto_client.ImpastoClient(server.address, timeout=2.0)
    with pytest.raises(impasto_client.BackendError) as info:
        plugin.stylize(make_image(96, 128, "uint8").tobytes(), 128, 96, "RGBA_U8", "udnie", refine=1000)
    assert info.value.code == "DEADLINE_EXCEEDED"
    with Client(server.address) as c:
        wait_for(lambda: c.info().queue_length == 0, 30)


@pytest.mark.slow
def test_eight_clients_all_correct_while_a_full_queue_refuses(server: ServeProcess, client: Client) -> None:
    blocker_token, times = CancelToken(), RefineTimes()
    blocker = Background(lambda: client.stylize(make_image(96, 128, "uint8"), "udnie", refine=1000,
                                                progress=times, cancel=blocker_token))
    assert times.refining.wait(120)
    images = [make_image(16, 20, dtype, seed=10 + i) for i, dtype in enumerate(["uint8", "uint16"] * 4)]
    positions: list[list[int]] = [[] for _ in images]

    def run(i: int) -> Any:
        if i % 2:  # half through the plugins' client, half through the numpy client
            plugin = impasto_client.ImpastoClient(server.address)
            fmt = "RGBA_U16" if images[i].dtype == np.uint16 else "RGBA_U8"
            out = plugin.stylize(images[i].tobytes(), 20, 16, fmt, "scream",
                                 progress=lambda stage, _, pos: stage == "queued" and positions[i].append(pos))
            return np.frombuffer(out.data, images[i].dtype).reshape(images[i].shape)
        with Client(server.address) as own:
            return own.stylize(images[i], "scream")

    jobs = []
    for i in range(len(images)):
        jobs.append(Background(lambda i=i: run(i)))  # type: ignore[misc]
        wait_for(lambda i=i: client.info().queue_length == i + 2, 30)  # type: ignore[misc]
    assert client.info().queue_length == MAX_QUEUE
    with pytest.raises(errors.ResourceExhausted, match="full"):
        client.stylize(images[0], "scream")
    blocker_token.cancel()
    for job in jobs:
        job.join(120)
    blocker.join()
    assert isinstance(blocker.error, errors.Cancelled)
    for i, job in enumerate(jobs):
        assert job.error is None, job.error
        expected = direct_engine().stylize(PixelBuffer.from_array(images[i]), "scream").array
        np.testing.assert_array_equal(job.result, expected)
    # The plugins saw their place in the queue count down to the front.
    assert positions[7][0] == 8 and positions[7][-1] == 1 and positions[1][0] == 2
