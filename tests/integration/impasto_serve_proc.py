"""Start the real `impasto serve` in a child process on port 0 and read back the port it printed."""

from __future__ import annotations

import os
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # Importing the plugins' client in the test process sets this; the server must keep the fast protobuf.
    env.pop("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "backend"), env.get("PYTHONPATH", "")]))
    # Two cores shared by everything: keep the server's torch from oversubscribing them.
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


class ServeProcess:
    """`impasto serve --address HOST:0 ARGS...`; `.address` is what it printed (HOST:PORT)."""

    def __init__(self, *args: str, host: str = "127.0.0.1", timeout: float = 90.0) -> None:
        cmd = [sys.executable, "-m", "impasto", "serve", "--address", f"{host}:0", "--device", "cpu", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=child_env(), cwd=ROOT)
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.proc.kill()
                raise RuntimeError(f"impasto serve did not start in {timeout} s: {''.join(self.stderr)}") from None
            if line.startswith("impasto: serving on "):
                bound = line.split()[3]
                self.port = int(bound.rpartition(":")[2])
                self.address = f"127.0.0.1:{self.port}"  # connect over loopback even when bound to 0.0.0.0
                return
            if self.proc.poll() is not None and self.lines.empty():
                time.sleep(0.2)
                raise RuntimeError(f"impasto serve exited: {''.join(self.stderr)}")

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (a graceful shutdown) and wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_ENGINE = None


def direct_engine():  # type: ignore[no-untyped-def]
    """An in-process Engine on the CPU, configured like the test servers, for reference results."""
    global _ENGINE
    if _ENGINE is None:
        from impasto.engine.engine import Engine, EngineConfig

        _ENGINE = Engine(EngineConfig(device="cpu"))
    return _ENGINE


def make_image(h: int, w: int, dtype: str, channels: int = 4, seed: int = 0):  # type: ignore[no-untyped-def]
    """A smooth-ish random image (H, W, C) of uint8 / uint16 / float32 with a varied alpha."""
    import numpy as np

    rng = np.random.default_rng(seed)
    base = rng.random((h // 4 + 1, w // 4 + 1, channels)).repeat(4, 0).repeat(4, 1)[:h, :w]
    noisy = np.clip(base * 0.8 + rng.random((h, w, channels)) * 0.2, 0, 1)
    if dtype == "uint8":
        return np.rint(noisy * 255).astype(np.uint8)
    if dtype == "uint16":
        return np.rint(noisy * 65535).astype(np.uint16)
    return noisy.astype(np.float32)


def wait_for(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until `condition()` held; fails after `timeout`."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.02)
    return time.monotonic() - start


class Background:
    """Run a call on a thread, keeping its result or exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:
            self.error = exc

    def join(self, timeout: float = 60) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "call did not return"


class RefineTimes:
    """Progress sink for a long refine job: when it started refining and how long an iteration takes
    (50 iterations: each one is 2%, so none is thinned out of the progress stream)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.refining = threading.Event()

    def __call__(self, stage: str, fraction: float, *_: object) -> None:
        if stage == "refine":
            self.times.append(time.monotonic())
            self.refining.set()

    def iteration(self) -> float:
        return statistics.median(b - a for a, b in zip(self.times, self.times[1:], strict=False))


def import_plugin_client():  # type: ignore[no-untyped-def]
    """The plugins' client (plugins/common), imported without leaving its protobuf setting in os.environ:
    it would make every server or tool that later tests start run on pure-Python protobuf."""
    common = str(ROOT / "plugins" / "common")
    if common not in sys.path:
        sys.path.insert(0, common)
    before = os.environ.get("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION")
    import impasto_client

    if before is None:
        os.environ.pop("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", None)
    return impasto_client
