"""The server's job queue on its own: order, positions, limits, cancellation and shutdown."""

from __future__ import annotations

import threading
import time

import pytest
from impasto.cancel import CancelToken, Progress
from impasto.errors import Cancelled, ResourceExhausted, Unavailable
from impasto.serve.jobs import Event, Job, JobQueue


def blocking(release: threading.Event, result: str = "done"):  # type: ignore[no-untyped-def]
    def work(progress: Progress, cancel: CancelToken) -> str:
        while not release.wait(0.01):
            cancel.check()  # the engine checks between tiles and iterations
        return result

    return work


def events(job: Job) -> list[Event]:
    return list(job.stream(poll=0.01))


def events_within(job: Job, timeout: float) -> list[Event]:
    got: list[list[Event]] = []
    thread = threading.Thread(target=lambda: got.append(events(job)), daemon=True)
    thread.start()
    thread.join(timeout)
    assert got, f"the job's event stream did not end within {timeout} s"
    return got[0]


def test_fifo_with_queue_positions() -> None:
    q = JobQueue(max_queue=4)
    release = threading.Event()
    first = q.submit(blocking(release, "a"), CancelToken())
    second = q.submit(blocking(release, "b"), CancelToken())
    third = q.submit(blocking(release, "c"), CancelToken())
    assert len(q) == 3
    release.set()
    got = [events(j) for j in (first, second, third)]
    assert [e[-1].result for e in got] == ["a", "b", "c"]
    assert got[0][0].position == 0 and got[1][0].position == 1 and got[2][0].position == 2
    # When the first job starts, the third moves up to one job ahead (the running one).
    assert [e.position for e in got[2] if e.kind == "queued"][-1] == 1
    q.shutdown(grace=1)


def test_full_queue_refuses() -> None:
    q = JobQueue(max_queue=2)
    release = threading.Event()
    q.submit(blocking(release), CancelToken())
    q.submit(blocking(release), CancelToken())
    with pytest.raises(ResourceExhausted, match="full"):
        q.submit(blocking(release), CancelToken())
    release.set()
    q.shutdown(grace=5)


def test_cancel_while_waiting_skips_the_job_and_running_job_stops() -> None:
    q = JobQueue(max_queue=3)
    release = threading.Event()
    running_token, waiting_token = CancelToken(), CancelToken()
    ran: list[str] = []
    running = q.submit(blocking(release), running_token)
    waiting = q.submit(lambda p, c: ran.append("waiting"), waiting_token)
    waiting_token.cancel()
    running_token.cancel()
    assert isinstance(events(running)[-1].error, Cancelled)
    assert isinstance(events(waiting)[-1].error, Cancelled) and ran == []
    after = q.submit(lambda p, c: "next", CancelToken())
    assert events(after)[-1].result == "next"
    q.shutdown(grace=1)


def test_progress_is_thinned_but_keeps_stage_changes() -> None:
    q = JobQueue()

    def work(progress: Progress, cancel: CancelToken) -> None:
        for i in range(1001):
            progress("stylize", i / 1000)
        progress("refine", 0.0)

    got = [e for e in events(q.submit(work, CancelToken())) if e.kind == "progress"]
    assert 90 <= len(got) <= 110
    assert got[-2].fraction == 1.0 and got[-1].stage == "refine"
    q.shutdown(grace=1)


def test_shutdown_cancels_after_the_grace_period_and_refuses_new_jobs() -> None:
    q = JobQueue()
    job = q.submit(blocking(threading.Event()), CancelToken())
    start = time.monotonic()
    q.shutdown(grace=0.3)
    assert 0.25 <= time.monotonic() - start < 5
    assert isinstance(events(job)[-1].error, Cancelled)
    with pytest.raises(Unavailable, match="shutting down"):
        q.submit(lambda p, c: None, CancelToken())


def test_unexpected_errors_reach_the_handler() -> None:
    q = JobQueue()

    def broken(progress: Progress, cancel: CancelToken) -> None:
        raise ZeroDivisionError("bug")

    assert isinstance(events(q.submit(broken, CancelToken()))[-1].error, ZeroDivisionError)
    assert events(q.submit(lambda p, c: 1, CancelToken()))[-1].result == 1  # the worker survived
    q.shutdown(grace=1)


def test_after_job_hook_hears_whether_the_job_failed() -> None:
    seen: list[bool] = []
    q = JobQueue(after_job=seen.append)
    events(q.submit(lambda p, c: 1, CancelToken()))

    def cancelled_mid_job(progress: Progress, cancel: CancelToken) -> None:
        cancel.cancel()
        cancel.check()

    events(q.submit(cancelled_mid_job, CancelToken()))
    q.shutdown(grace=1)
    assert seen == [False, True]


def test_jobs_cancelled_while_waiting_free_their_slots_at_once() -> None:
    # While one job runs for a long time, clients that gave up waiting must not keep new ones out.
    q = JobQueue(max_queue=3)
    release, started = threading.Event(), threading.Event()
    work = blocking(release)
    q.submit(lambda p, c: started.set() or work(p, c), CancelToken())
    assert started.wait(10)  # the worker is busy from now on: it cannot be the one that drops them
    tokens = [CancelToken(), CancelToken()]
    waiting = [q.submit(lambda p, c: "never", token) for token in tokens]
    with pytest.raises(ResourceExhausted):
        q.submit(lambda p, c: "refused", CancelToken())
    for token in tokens:
        token.cancel()
    assert len(q) == 1  # the running job only
    later = [q.submit(lambda p, c, i=i: i, CancelToken()) for i in range(2)]  # type: ignore[misc]
    assert all(isinstance(events(j)[-1].error, Cancelled) for j in waiting)
    release.set()
    assert [events(j)[-1].result for j in later] == [0, 1]
    q.shutdown(grace=1)


def test_a_job_cancelled_while_waiting_ends_its_stream_while_the_running_job_goes_on() -> None:
    # Its handler (and the images it holds) must not wait for the running job to finish.
    q = JobQueue(max_queue=3)
    release, started = threading.Event(), threading.Event()
    work = blocking(release, "first")
    running = q.submit(lambda p, c: started.set() or work(p, c), CancelToken())
    assert started.wait(10)  # the worker is busy from now on
    token = CancelToken()
    waiting = q.submit(lambda p, c: "never", token)
    token.cancel()
    got = events_within(waiting, 10)  # ends although the running job is still blocked
    assert isinstance(got[-1].error, Cancelled) and not release.is_set() and len(q) == 1
    release.set()
    assert events(running)[-1].result == "first"
    q.shutdown(grace=1)
