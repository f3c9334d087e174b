"""Installing, updating and removing the backend from the docker, in plain Python (no Krita, no Qt).

The backend needs torch, which Krita's Python cannot hold, so it gets a private virtual environment in the
user's data folder (`data_dir()/backend`). That environment is made by an ordinary Python 3.11 found on
the machine (Krita's embedded Python cannot make one on Windows or macOS), then `pip install impasto`
fills it: from the package index, or from a wheel, a source folder or a folder of wheels the user points
at. Everything runs on a worker thread; the docker polls `BackendSetup.poll()` from a timer for the output
lines and progress, and the whole output is kept in `data_dir()/backend-setup.log`. Removing it deletes
the folder."""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

# The Python the backend runs on (pyproject.toml requires-python; tests/unit/test_krita_backend_setup.py
# checks they agree).
BACKEND_PYTHON = (3, 11)
WANT = ".".join(map(str, BACKEND_PYTHON))
PACKAGE = "impasto"

LINE, PROGRESS, DONE, ERROR = "line", "progress", "done", "error"

Version = Callable[[str], "tuple[int, int] | None"]
Which = Callable[[str], "str | None"]


def data_dir(platform: str = sys.platform, env: dict[str, str] | None = None) -> str:
    """Impasto's per-user data folder (where the backend's environment and its log live)."""
    env = dict(os.environ) if env is None else env
    home = os.path.expanduser("~")
    if platform == "win32":
        base = env.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
    elif platform == "darwin":
        base = os.path.join(home, "Library", "Application Support")
    else:
        base = env.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
    return os.path.join(base, "impasto")


def env_python(env_dir: str, platform: str = sys.platform) -> str:
    """The interpreter inside a virtual environment made by `python -m venv env_dir`."""
    if platform == "win32":
        return os.path.join(env_dir, "Scripts", "python.exe")
    return os.path.join(env_dir, "bin", "python")


def _clean_env() -> dict[str, str]:
    """The environment for the child Pythons: Krita's own Python settings would break them."""
    env = dict(os.environ)
    for name in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"):
        env.pop(name, None)
    env.update(PYTHONUNBUFFERED="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def _flags() -> int:
    return getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0


def python_version(path: str) -> tuple[int, int] | None:
    """(major, minor) of the Python at `path`, or None when it does not run."""
    try:
        out = subprocess.run([path, "-c", "import sys, venv; print('%d %d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30, env=_clean_env(),
                             creationflags=_flags())
        major, minor = out.stdout.split()
        return int(major), int(minor)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def python_candidates(platform: str = sys.platform, env: dict[str, str] | None = None,
                      which: Which = shutil.which) -> list[str]:
    """Where a system Python 3.11 may be: on PATH, then where the usual installers put it."""
    env = dict(os.environ) if env is None else env
    want = WANT
    found = [which(name) for name in (f"python{want}", "python3", "python")]
    if platform == "win32":
        tag = want.replace(".", "")
        for base in (env.get("LOCALAPPDATA", ""), env.get("ProgramFiles", "")):
            if base:
                found.append(os.path.join(base, "Programs", "Python", f"Python{tag}", "python.exe"))
                found.append(os.path.join(base, f"Python{tag}", "python.exe"))
    elif platform == "darwin":
        found += [f"/Library/Frameworks/Python.framework/Versions/{want}/bin/python{want}",
                  f"/opt/homebrew/bin/python{want}", f"/usr/local/bin/python{want}"]
    else:
        found += [f"/usr/bin/python{want}", f"/usr/local/bin/python{want}"]
    unique: list[str] = []
    for path in found:
        if path and path not in unique and os.path.isfile(path):
            unique.append(path)
    return unique


def find_python(candidates: Sequence[str] | None = None, version: Version = python_version) -> str:
    """The first candidate that is a Python of BACKEND_PYTHON's version with venv, or ""."""
    for path in python_candidates() if candidates is None else candidates:
        if version(path) == BACKEND_PYTHON:
            return path
    return ""


def pip_target(source: str, offline: bool = False) -> list[str]:
    """pip install's arguments for where Impasto comes from: "" is the package index; else a wheel, a
    source folder (with pyproject.toml) or a folder of wheels (used as --find-links, index as fallback)."""
    source = source.strip()
    args = ["--no-index"] if offline else []
    if not source:
        return [*args, PACKAGE]
    path = os.path.abspath(os.path.expanduser(source))
    if os.path.isfile(path) and path.endswith(".whl"):
        return [*args, path]
    if os.path.isdir(path):
        if any(os.path.isfile(os.path.join(path, f)) for f in ("pyproject.toml", "setup.py")):
            return [*args, path]
        return [*args, "--find-links", path, PACKAGE]
    raise ValueError(f"Install from: {source!r} is neither a .whl file nor a folder; leave it empty to "
                     "install from the package index.")


class PipProgress:
    """A rough fraction from pip's output lines: pip tells neither how many packages it will collect nor
    how long each takes, so collecting creeps towards 70 %, installing runs to 95 %, and the last line
    jumps to the end. `label` is what the docker shows."""

    _COLLECT = re.compile(r"^(Collecting|Processing|Requirement already satisfied|Looking in links) ")
    _DOWNLOAD = re.compile(r"^\s*Downloading (\S+)(.*)$")

    def __init__(self) -> None:
        self.fraction = 0.0
        self.label = "Starting pip…"
        self.collected = 0

    def feed(self, line: str) -> bool:
        """Update from one line; True when the fraction or label changed."""
        text = line.strip()
        before = (self.fraction, self.label)
        download = self._DOWNLOAD.match(text)
        if download:
            name = os.path.basename(download.group(1)).split("-")[0]
            self.label = f"Downloading {name}{download.group(2)}"
        elif self._COLLECT.match(text):
            self.collected += 1
            self.fraction = max(self.fraction, 0.7 * self.collected / (self.collected + 10))
            self.label = "Collecting packages…"
        elif text.startswith("Installing collected packages:"):
            self.fraction = max(self.fraction, 0.75)
            self.label = "Installing packages (torch takes a while)…"
        elif text.startswith("Successfully installed"):
            self.fraction = 1.0
            self.label = "Installed."
        return (self.fraction, self.label) != before


@dataclass(frozen=True)
class Event:
    """LINE (text: one output line), PROGRESS (text: label, fraction: 0..1 of the whole run), then DONE
    (text: what was done) or ERROR (text: what went wrong, for the user)."""

    kind: str
    text: str = ""
    fraction: float = 0.0


class Cancelled(Exception):
    pass


class BackendSetup:
    """Install, update or remove the backend's environment; one action at a time, on a worker thread.

    `python`: the system Python that makes the environment ("" = found with find_python()). `source`,
    `offline`: see pip_target(). `pip_args`: more options for `pip install` (an --index-url for a mirror,
    say). `site_paths`: folders the environment sees besides its own packages (a .pth file), for example
    one where torch is already installed; the tests use it with --no-deps to install offline."""

    def __init__(self, env_dir: str = "", log_path: str = "", python: str = "", source: str = "",
                 offline: bool = False, pip_args: Sequence[str] = (), site_paths: Sequence[str] = ()) -> None:
        self.env_dir = env_dir or os.path.join(data_dir(), "backend")
        self.log_path = log_path or os.path.join(os.path.dirname(self.env_dir), "backend-setup.log")
        self.python, self.source, self.offline = python, source, offline
        self.pip_args = tuple(pip_args)
        self.site_paths = tuple(site_paths)
        self._events: queue.Queue[Event] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._log: TextIO | None = None

    # -- state ----------------------------------------------------------------------------------------

    @property
    def interpreter(self) -> str:
        """The environment's Python: what the docker's Start button runs `-m impasto serve` with."""
        return env_python(self.env_dir)

    @property
    def installed(self) -> bool:
        return os.path.isfile(self.interpreter)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- actions (each returns at once; poll() tells how it goes) ---------------------------------------

    def install(self) -> None:
        """Make the environment if needed and install (or upgrade) Impasto into it."""
        self._start(self._install)

    def remove(self) -> None:
        self._start(self._remove)

    def cancel(self) -> None:
        self._cancel.set()
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                self._process.terminate()

    def poll(self) -> list[Event]:
        events: list[Event] = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the action ends (headless use, tests); False on timeout."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    # -- the worker --------------------------------------------------------------------------------------

    def _start(self, work: Callable[[], str]) -> None:
        if self.running:
            raise RuntimeError("The backend setup is still busy.")
        self._cancel.clear()
        self._thread = threading.Thread(target=self._run, args=(work,), name="impasto-setup", daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], str]) -> None:
        os.makedirs(os.path.dirname(self.log_path) or ".", exist_ok=True)
        try:
            with open(self.log_path, "w", encoding="utf-8") as self._log:  # noqa: SIM117 - two failure kinds
                try:
                    done = work()
                except Cancelled:
                    self._emit(Event(ERROR, "Cancelled; run Install again to finish."))
                except (OSError, ValueError, RuntimeError) as exc:
                    self._emit(Event(ERROR, str(exc)))
                else:
                    self._emit(Event(DONE, done, 1.0))
        except OSError as exc:  # the log itself cannot be written
            self._events.put(Event(ERROR, f"Cannot write {self.log_path}: {exc}"))

    def _emit(self, event: Event) -> None:
        if event.kind != PROGRESS and self._log is not None:
            self._log.write(event.text + "\n")
            self._log.flush()
        self._events.put(event)

    def _step(self, command: list[str], start: float, end: float, label: str,
              progress: PipProgress | None = None) -> None:
        """Run one command, streaming its output as LINE events and its progress within [start, end]."""
        if self._cancel.is_set():
            raise Cancelled()
        self._emit(Event(PROGRESS, label, start))
        self._emit(Event(LINE, "$ " + " ".join(command)))
        with self._lock:
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                             stderr=subprocess.STDOUT, env=_clean_env(), text=True,
                                             encoding="utf-8", errors="replace", creationflags=_flags())
        assert self._process.stdout is not None
        tail: list[str] = []
        for line in self._process.stdout:
            line = line.rstrip()
            self._emit(Event(LINE, line))
            tail = (tail + [line])[-5:]
            if progress is not None and progress.feed(line):
                self._emit(Event(PROGRESS, progress.label, start + (end - start) * progress.fraction))
        code = self._process.wait()
        if self._cancel.is_set():
            raise Cancelled()
        if code != 0:
            last = next((t for t in reversed(tail) if t.strip()), "")
            raise RuntimeError(f"{label} failed (exit code {code}): {last} — see {self.log_path}")

    def _install(self) -> str:
        if not self.installed:
            python = self.python or find_python()
            if not python:
                raise ValueError(f"No Python {WANT} found: install it (python.org, or your system's package "
                                 "manager) and try again, or enter its path under System Python.")
            if python_version(python) != BACKEND_PYTHON:
                raise ValueError(f"{python} is not a Python {WANT} with venv; the backend needs {WANT}.")
            os.makedirs(os.path.dirname(self.env_dir) or ".", exist_ok=True)
            try:
                self._step([python, "-m", "venv", self.env_dir], 0.0, 0.1, "Creating the environment")
                if self.site_paths:
                    self._add_site_paths()
            except BaseException:
                shutil.rmtree(self.env_dir, ignore_errors=True)  # half an environment would pass for one
                raise
        target = pip_target(self.source, self.offline)
        self._step([self.interpreter, "-m", "pip", "install", "--upgrade", "--progress-bar", "off", *self.pip_args,
                    *target],
                   0.1, 0.95, "Installing Impasto", PipProgress())
        self._step([self.interpreter, "-m", PACKAGE, "--version"], 0.95, 1.0, "Checking the backend")
        return f"Impasto is installed in {self.env_dir}."

    def _add_site_paths(self) -> None:
        code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        out = subprocess.run([self.interpreter, "-c", code], capture_output=True, text=True, timeout=60,
                             env=_clean_env(), creationflags=_flags())
        purelib = out.stdout.strip()
        if out.returncode != 0 or not os.path.isdir(purelib):
            raise RuntimeError(f"cannot find the new environment's site-packages: {out.stderr.strip()}")
        with open(os.path.join(purelib, "impasto-shared.pth"), "w", encoding="utf-8") as f:
            f.write("\n".join(self.site_paths) + "\n")

    def _remove(self) -> str:
        if not os.path.isdir(self.env_dir):
            return "The backend was not installed."
        self._emit(Event(PROGRESS, "Removing the backend…", 0.0))
        self._emit(Event(LINE, f"Removing {self.env_dir}"))
        shutil.rmtree(self.env_dir)
        return f"Removed {self.env_dir}."
