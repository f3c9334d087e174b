"""Starting and stopping a local `impasto serve` for the user (the docker's Start button).

The backend needs torch, which Krita's bundled Python does not have, so it runs as a separate process
with the interpreter the user picks in the plugin settings (a venv where `pip install impasto` ran)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence

Popen = Callable[..., subprocess.Popen]


def serve_command(interpreter: str, address: str, token: str = "") -> list[str]:
    command = [interpreter, "-m", "impasto", "serve", "--address", address]
    if token:
        command += ["--token", token]
    return command


class ServerProcess:
    """One backend process we started; we stop it on `stop()` (called when Krita quits)."""

    def __init__(self, popen: Popen = subprocess.Popen, log_path: str = "") -> None:
        self._popen = popen
        self.log_path = log_path or os.path.join(tempfile.gettempdir(), "impasto-serve.log")
        self._process: subprocess.Popen | None = None
        self.command: Sequence[str] = ()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def exit_code(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def start(self, interpreter: str, address: str, token: str = "") -> None:
        if self.running:
            return
        if not interpreter:
            raise ValueError("Set the Python that has Impasto installed in the plugin settings first.")
        if not os.path.isfile(interpreter):
            raise ValueError(f"The backend interpreter {interpreter!r} does not exist; check the settings.")
        self.command = serve_command(interpreter, address, token)
        flags = 0
        if sys.platform == "win32":
            # No console window popping up next to Krita for the backend.
            flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)
        env = dict(os.environ)
        # Krita sets these for its own embedded Python; they would break a different interpreter.
        for name in ("PYTHONHOME", "PYTHONPATH", "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"):
            env.pop(name, None)
        # Output goes to a log file, not a pipe: nobody reads a pipe while the backend runs, and a full
        # one would block it.
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child keeps writing to it after we return
        try:
            self._process = self._popen(
                list(self.command), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, creationflags=flags,
            )
        finally:
            log.close()

    def error_output(self) -> str:
        """The last lines a process that already exited wrote, for the docker."""
        if self._process is None or self._process.poll() is None:
            return ""
        try:
            with open(self.log_path, "rb") as f:
                text = f.read()[-4000:]
        except OSError:
            return ""
        lines = text.decode("utf-8", "replace").strip().splitlines()
        return "\n".join(lines[-3:])

    def stop(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
