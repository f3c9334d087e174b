"""What keeps `impasto serve` answering under abuse: a cap on open image streams, a memory budget that each
upload is admitted against from its header (before its pixels arrive), and an idle timeout for streams that
stop sending or reading.

gRPC gives every call a thread for as long as it lasts, and an image stream can last as long as its client
likes. Image streams may hold at most `max_streams` threads; the server's pool has RESERVED_THREADS more, so
health checks, ListModels and GetServerInfo always find one. A stream over either limit is refused at once
(RESOURCE_EXHAUSTED) rather than made to wait, so a refusal never holds a thread either. docs/dev/server.md
lists every limit and the option that changes it.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING

from impasto.errors import Cancelled, ResourceExhausted

if TYPE_CHECKING:  # `impasto --help` reads the defaults here without loading grpc
    import grpc

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_BUDGET = 2 << 30  # bytes: one 64-megapixel RGBA float32 pair (Gatys) fits
DEFAULT_IDLE_TIMEOUT = 30.0  # seconds a stream may go without sending (or reading) a message
RESERVED_THREADS = 8  # server threads image streams can never take
EXTRA_STREAMS = 4  # default --max-streams is --max-queue plus this many streams still uploading
TRIM_AFTER = 32 << 20  # bytes: releasing an upload at least this big hands freed heap memory back to the OS


def default_max_streams(max_queue: int) -> int:
    return max_queue + EXTRA_STREAMS


def _mb(nbytes: int) -> str:
    return f"{nbytes / 2**20:,.1f} MB"


class StreamGate:
    """Counts open image streams and the bytes their images hold; both limits refuse instead of waiting."""

    def __init__(self, max_streams: int, budget: int) -> None:
        if max_streams < 1 or budget < 1:
            raise ValueError("max_streams and budget must be at least 1")
        self.max_streams = max_streams
        self.budget = budget
        self._lock = threading.Lock()
        self.streams = 0
        self.reserved = 0
        self._trim = _Trimmer()

    def open(self) -> Upload:
        """A slot for one image stream; ResourceExhausted when `max_streams` are open."""
        with self._lock:
            if self.streams >= self.max_streams:
                raise ResourceExhausted(
                    f"{self.streams} image streams are open, the most this server takes at once",
                    hint="try again when one finishes, or start the server with a larger --max-streams",
                )
            self.streams += 1
        return Upload(self)

    def _reserve(self, upload: Upload, nbytes: int) -> None:
        with self._lock:
            if upload.closed:
                raise Cancelled("the call ended before its images arrived")
            if nbytes > self.budget:
                raise ResourceExhausted(
                    f"the image(s) need {_mb(nbytes)}, more than the server's upload budget of {_mb(self.budget)}",
                    hint="send a smaller image, or start the server with a larger --upload-budget",
                )
            if self.reserved + nbytes > self.budget:
                raise ResourceExhausted(
                    f"images being received or waiting for their job hold {_mb(self.reserved)} of the "
                    f"{_mb(self.budget)} upload budget; this request needs {_mb(nbytes)} more",
                    hint="try again when the current jobs finish, or start the server with a larger --upload-budget",
                )
            self.reserved += nbytes
            upload.nbytes += nbytes

    def _release(self, upload: Upload) -> None:
        with self._lock:
            if upload.closed:  # the handler's exit and the call's end both close it
                return
            upload.closed = True
            self.streams -= 1
            self.reserved -= upload.nbytes
        if upload.nbytes >= TRIM_AFTER:
            self._trim.soon()


class Upload:
    """One open image stream: `reserve` its images' bytes from the header, `close` when the call ends."""

    def __init__(self, gate: StreamGate) -> None:
        self._gate = gate
        self.nbytes = 0
        self.closed = False

    def reserve(self, nbytes: int) -> None:
        """Admit `nbytes` more against the budget (non-blocking); ResourceExhausted when they do not fit."""
        self._gate._reserve(self, nbytes)

    def close(self) -> None:
        self._gate._release(self)

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class _Trimmer:
    """Hands memory freed by big uploads back to the OS, a moment after the call has ended.

    The 1 MiB messages gRPC hands us are ordinary heap blocks; after a burst of uploads glibc keeps the freed
    heap (in one arena per handler thread) and the process stays hundreds of megabytes larger than it needs to
    be. The call's frames are gone only after its handler returns, hence the short delay before malloc_trim
    (glibc only; elsewhere this does nothing). server._abort drops tracebacks so that no reference cycle keeps
    the images alive until a garbage collection."""

    DELAY = 0.3

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def soon(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="impasto-trim", daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(self.DELAY)  # several streams ending together cost one trim
            self._wake.clear()
            malloc_trim()


def malloc_trim() -> bool:
    """glibc's malloc_trim(0): return free heap pages of every arena to the OS. False where unavailable."""
    try:
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError):
        return False


class IdleWatch:
    """Cancels calls that go `timeout` seconds without a message in either direction while being watched.

    gRPC cannot time out a blocked read of the request stream, but another thread may cancel the call, which
    wakes the handler (its request iterator raises) and frees its thread and upload reservation."""

    def __init__(self, timeout: float) -> None:
        if not timeout > 0:
            raise ValueError("the idle timeout must be positive")
        self.timeout = timeout
        self._lock = threading.Lock()
        self._watched: set[Watched] = set()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def watch(self, context: grpc.ServicerContext) -> Watched:
        watched = Watched(self, context)
        with self._lock:
            self._watched.add(watched)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="impasto-idle-watch", daemon=True)
                self._thread.start()
        return watched

    def _forget(self, watched: Watched) -> None:
        with self._lock:
            self._watched.discard(watched)

    def _run(self) -> None:
        tick = min(1.0, self.timeout / 4)
        while not self._stop.wait(tick):
            now = time.monotonic()
            with self._lock:
                idle = [w for w in self._watched if not w.paused and now - w.last > self.timeout]
                self._watched.difference_update(idle)
            for w in idle:
                w.expired = True
                log.info("closing an image stream that sent or read nothing for %.0f s", self.timeout)
                w.context.cancel()

    def close(self) -> None:
        self._stop.set()


class Watched:
    """One watched call: `touch()` on every message, `pause()` while the server itself is busy (the job)."""

    def __init__(self, watch: IdleWatch, context: grpc.ServicerContext) -> None:
        self._watch = watch
        self.context = context
        self.last = time.monotonic()
        self.paused = False
        self.expired = False

    def touch(self) -> None:
        self.last = time.monotonic()
        self.paused = False

    def pause(self) -> None:
        self.paused = True

    def __enter__(self) -> Watched:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._watch._forget(self)
