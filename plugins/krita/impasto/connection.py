"""The backend as the docker sees it: whether it answers, what it offers, starting it. A part of the
Controller (controller.py), kept apart because it is one idea: probing.

A probe is a server_info (plus list_models for a full one) on a worker thread. While connected, a cheap
one every HEALTH_SECONDS notices a backend that went away within a few seconds (a refused connection
fails at once; a wedged backend after PROBE_TIMEOUT); while disconnected, a full one every
IDLE_RETRY_SECONDS notices one that came back, whoever started it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from impasto_common import DONE, PROGRESS

from .jobs import Event, Job

ClientFactory = Callable[[str, str], Any]  # (address, token) -> an impasto_client.ImpastoClient
RETRY_SECONDS = 1.0  # after Start, while the backend comes up
IDLE_RETRY_SECONDS = 2.0  # while disconnected: the user may start it elsewhere, or it may come back
HEALTH_SECONDS = 2.0  # while connected: is it still there?
PROBE_TIMEOUT = 2.0  # a server_info that takes longer than this counts as no answer
START_WAIT_SECONDS = 120.0  # importing torch and loading models can take a while on a cold start


def default_client_factory(address: str, token: str) -> Any:
    from impasto_client import ImpastoClient  # vendored beside the plugin; imported late to load fast

    return ImpastoClient(address, token or None)


def describe_error(exc: BaseException) -> tuple[bool, str]:
    """(backend unreachable?, message for the user) for a failed job."""
    code = getattr(exc, "code", None)
    name = type(exc).__name__
    if name == "BackendNotRunning" or code == "UNAVAILABLE":
        return True, ("The Impasto backend is not running. Press Start, or run `impasto serve` "
                      "and check the address.")
    if name == "OperationCancelled" or code == "CANCELLED":
        return False, "Cancelled; the document was not changed."
    if code == "DEADLINE_EXCEEDED":
        return True, "The Impasto backend does not answer."
    if code == "UNAUTHENTICATED":
        return False, "The backend needs a token: enter the one `impasto serve` was given."
    if code is not None:
        message = getattr(exc, "message", "") or str(exc)
        return False, f"The backend could not do it: {message}"
    return False, f"Unexpected error ({name}): {exc}"


class Connection:
    """Mixed into the Controller, whose state (settings, server, views, clock, ...) it uses."""

    settings: Any
    server: Any
    clock: Callable[[], float]
    client_factory: ClientFactory
    connected: bool | None
    info: Any
    styles: list[Any]
    upscalers: list[Any]
    operations: tuple[str, ...]
    job: Job | None
    preview: Any
    _probe: Job | None
    _probe_full: bool
    _pending_full: bool
    _retry_until: float
    _next_probe: float
    _refresh_error: str
    _each: Callable[..., None]  # (View method, *args): tell every view
    message: Callable[..., None]  # (text, error=False, valid=None)
    _check_note: Callable[[], None]  # take down a message that stopped being true

    @property
    def server_version(self) -> str:
        return str(self.info.version) if self.info is not None else ""

    def _client(self, quiet: bool = False) -> Any:
        """A client for the current settings, or None after telling the user why there is none."""
        try:
            return self.client_factory(self.settings.address, self.settings.token)
        except ImportError as exc:
            # The vendored packages did not load in this Krita's Python (missing, or too new for it).
            version = ".".join(map(str, sys.version_info[:3]))
            text = (f"Impasto's client cannot load in Krita's Python {version}: {exc}. Reinstall the "
                    "plugin with `impasto plugin install krita`.")
        except ValueError as exc:  # a malformed address
            text = str(exc)
        if not quiet:
            self.message(text, error=True)
        return None

    def _status_text(self) -> str:
        if self.connected is None:
            return "Connecting…"
        if self.connected:
            version = f" (v{self.server_version})" if self.server_version else ""
            return f"Connected to {self.settings.address}{version}"
        if self.server.running:
            return "Backend starting…"
        return f"Backend not running at {self.settings.address}"

    def connect(self) -> None:
        """The Connect button: ask again, and say again what is wrong if it still is."""
        self._refresh_error = ""
        self.refresh()

    def refresh(self) -> None:
        """Ask the backend for its info and models, off the GUI thread."""
        if self._probe is not None:
            self._pending_full = True  # right after the one in flight, which may have used old settings
            return
        self._start_probe(full=True)

    def _start_probe(self, full: bool) -> None:
        client = self._client(quiet=not full)
        if client is None:
            self._next_probe = self.clock() + IDLE_RETRY_SECONDS
            return
        if not full:
            try:
                client.timeout = PROBE_TIMEOUT  # a health check must not hang on a wedged backend
            except AttributeError:
                pass

        def work(progress: Any, cancel: Any) -> tuple[Any, list[Any] | None]:
            return client.server_info(), (client.list_models() if full else None)

        self._probe_full = full
        self._probe = Job("refresh" if full else "health", work).start()

    def _probe_finished(self, event: Event) -> None:
        self._probe = None
        was = self.connected
        if event.kind == DONE:
            info, models = event.result
            self._refresh_error = ""
            self.connected = True
            self._retry_until = 0.0
            changed = self.info is None or (info.version, tuple(info.operations)) != (
                self.info.version, tuple(self.info.operations))
            limits_changed = self.info is None or info.max_pixels != self.info.max_pixels
            self.info = info
            self.operations = tuple(info.operations)
            if models is not None:
                self.styles = [m for m in models if m.kind == "style"]
                self.upscalers = [m for m in models if m.kind == "sr"]
                if not self.settings.style and self.styles:
                    self.settings = replace(self.settings, style=self.styles[0].name)
                self._each("show_models", self.styles, self.upscalers, self.operations)
                limits_changed = True
            elif changed:
                self._pending_full = True  # another backend (restarted, upgraded): its models may differ
            if limits_changed:
                self._each("show_limits")
            self._next_probe = self.clock() + HEALTH_SECONDS
            self._check_note()
        else:
            unreachable, text = describe_error(event.error or Exception("unknown"))
            self.connected = False
            if unreachable and self.server.exit_code() not in (None, 0):
                text = f"The backend stopped: {self.server.error_output() or 'see its log'}"
                self._retry_until = 0.0
            elif unreachable:
                text = ""
            if text and text != self._refresh_error:  # said once, not again at every retry
                self.message(text, error=True)
            self._refresh_error = text
            self._next_probe = self.clock() + (RETRY_SECONDS if self._retry_until else IDLE_RETRY_SECONDS)
            if was:
                self.preview.stop()
        if self.connected != was or event.kind == DONE and self._probe_full:
            self._each("show_status", self.connected, self._status_text())

    def start_backend(self) -> None:
        try:
            self.server.start(self.settings.interpreter, self.settings.address, self.settings.token)
        except (ValueError, OSError) as exc:
            self.message(str(exc), error=True)
            return
        self.message("Starting the backend…", valid=lambda: self.connected is not True and self.server.running)
        self._retry_until = self.clock() + START_WAIT_SECONDS
        self._next_probe = self.clock() + RETRY_SECONDS
        self._each("show_status", self.connected, self._status_text())

    def _poll_probe(self, now: float) -> None:
        """The GUI tick's part for the connection: collect a finished probe, start the next one when due."""
        if self._probe is not None:
            for event in self._probe.poll():
                if event.kind != PROGRESS:
                    self._probe_finished(event)
        if self._probe is not None:
            return
        if self._pending_full:
            self._pending_full = False
            self._start_probe(full=True)
        elif self.connected is not None and now >= self._next_probe and self.job is None:
            # Not while a job runs: its stream already says whether the backend is there.
            if self.connected is False and self._retry_until and now > self._retry_until:
                self._retry_until = 0.0
                self.message("The backend did not answer in time; check its settings.", error=True)
            self._start_probe(full=not self.connected)
