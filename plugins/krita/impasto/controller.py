"""What the docker and the actions do, in plain Python: no Krita, no Qt.

The controller owns the backend connection state, the one running image job and the settings. Editor
access goes through `documents` (kritadoc.KritaDocuments in Krita, a fake in tests); every view (a docker
per Krita window) gets the same updates. `poll()` must be called regularly on the GUI thread: it is where
finished network jobs touch the document, so Krita is only ever called from that thread."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from impasto_common import DONE, ERROR, FACTORS, PROGRESS

from .formats import UnsupportedDocument, apply_selection, layer_name
from .jobs import Event, Job
from .server_process import ServerProcess
from .settings import Read, Settings, StyleOptions, Write

ClientFactory = Callable[[str, str], Any]  # (address, token) -> an impasto_client.ImpastoClient
RETRY_SECONDS = 1.0
IDLE_RETRY_SECONDS = 10.0  # while disconnected, look again now and then: the user may start it elsewhere
START_WAIT_SECONDS = 120.0  # importing torch and loading models can take a while on a cold start


class View(Protocol):
    def show_status(self, connected: bool | None, text: str) -> None: ...
    def show_models(self, styles: list[Any], upscalers: list[Any], operations: tuple[str, ...]) -> None: ...
    def show_busy(self, busy: bool, text: str) -> None: ...
    def show_progress(self, stage: str, fraction: float, position: int) -> None: ...
    def show_message(self, text: str, error: bool = False) -> None: ...


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
    if code == "UNAUTHENTICATED":
        return False, "The backend needs a token: enter the one `impasto serve` was given."
    if code is not None:
        message = getattr(exc, "message", "") or str(exc)
        return False, f"The backend could not do it: {message}"
    return False, f"Unexpected error ({name}): {exc}"


class Controller:
    def __init__(
        self,
        documents: Any,
        read_setting: Read,
        write_setting: Write,
        client_factory: ClientFactory = default_client_factory,
        server: ServerProcess | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.documents = documents
        self._write = write_setting
        self.settings = Settings.load(read_setting)
        self.client_factory = client_factory
        self.server = server or ServerProcess()
        self.clock = clock
        self.views: list[View] = []
        self.connected: bool | None = None  # None: not asked yet
        self.server_version = ""
        self.styles: list[Any] = []
        self.upscalers: list[Any] = []
        self.operations: tuple[str, ...] = ()
        self.job: Job | None = None
        self._job_done: Callable[[Any], None] | None = None
        self._refresh_job: Job | None = None
        self._retry_until = 0.0
        self._next_retry = 0.0
        self._refresh_error = ""

    # -- views --------------------------------------------------------------------------------------

    def add_view(self, view: View) -> None:
        self.views.append(view)
        view.show_status(self.connected, self._status_text())
        view.show_models(self.styles, self.upscalers, self.operations)
        view.show_busy(self.busy, "")

    def remove_view(self, view: View) -> None:
        if view in self.views:
            self.views.remove(view)

    def _each(self, method: str, *args: Any) -> None:
        for view in list(self.views):
            getattr(view, method)(*args)

    def message(self, text: str, error: bool = False) -> None:
        self._each("show_message", text, error)

    # -- settings -----------------------------------------------------------------------------------

    def update_settings(self, **changes: Any) -> None:
        reconnect = any(changes.get(k, getattr(self.settings, k)) != getattr(self.settings, k)
                        for k in ("address", "token"))
        self.settings = replace(self.settings, **changes)
        self.settings.save(self._write)
        if reconnect:
            self.refresh()

    def style_display_name(self, style: str) -> str:
        for model in self.styles:
            if model.name == style:
                return model.display_name or style
        return style

    # -- connection ---------------------------------------------------------------------------------

    def _client(self) -> Any:
        """A client for the current settings, or None after telling the user why there is none."""
        try:
            return self.client_factory(self.settings.address, self.settings.token)
        except ImportError as exc:
            # The vendored packages did not load in this Krita's Python (missing, or too new for it).
            version = ".".join(map(str, sys.version_info[:3]))
            self.message(f"Impasto's client cannot load in Krita's Python {version}: {exc}. Reinstall the "
                         "plugin with `impasto plugin install krita`.", error=True)
        except ValueError as exc:  # a malformed address
            self.message(str(exc), error=True)
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
        if self._refresh_job is not None:
            return
        client = self._client()
        if client is None:
            return

        def work(progress: Any, cancel: Any) -> tuple[Any, list[Any]]:
            return client.server_info(), client.list_models()

        self._refresh_job = Job("refresh", work).start()

    def _refresh_finished(self, event: Event) -> None:
        self._refresh_job = None
        if event.kind == DONE:
            info, models = event.result
            self._refresh_error = ""
            self.connected = True
            self._retry_until = 0.0
            self.server_version = info.version
            self.operations = tuple(info.operations)
            self.styles = [m for m in models if m.kind == "style"]
            self.upscalers = [m for m in models if m.kind == "sr"]
            if not self.settings.style and self.styles:
                self.settings = replace(self.settings, style=self.styles[0].name)
            self._each("show_models", self.styles, self.upscalers, self.operations)
        else:
            unreachable, text = describe_error(event.error or Exception("unknown"))
            if not self._retry_until:
                self._next_retry = self.clock() + IDLE_RETRY_SECONDS
            self.connected = False
            if unreachable and self.server.exit_code() not in (None, 0):
                text = f"The backend stopped: {self.server.error_output() or 'see its log'}"
                self._retry_until = 0.0
            elif unreachable:
                text = ""
            if text and text != self._refresh_error:  # said once, not again at every retry
                self.message(text, error=True)
            self._refresh_error = text
        self._each("show_status", self.connected, self._status_text())

    def start_backend(self) -> None:
        try:
            self.server.start(self.settings.interpreter, self.settings.address, self.settings.token)
        except (ValueError, OSError) as exc:
            self.message(str(exc), error=True)
            return
        self.message("Starting the backend…")
        self._retry_until = self.clock() + START_WAIT_SECONDS
        self._next_retry = self.clock() + RETRY_SECONDS
        self._each("show_status", self.connected, self._status_text())

    # -- image jobs ---------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.job is not None

    def _start(self, name: str, text: str, work: Any, done: Callable[[Any], None]) -> None:
        self.job = Job(name, work).start()
        self._job_done = done
        self.message("")
        self._each("show_busy", True, text)

    def apply(self, options: StyleOptions | None = None) -> bool:
        """Stylize the active layer (or the selection on it) into a new layer above it."""
        if self.busy:
            self.message("Impasto is still working on the previous job.", error=True)
            return False
        options = options or self.settings.options
        if not options.style:
            self.message("Pick a style first.", error=True)
            return False
        if "refine" not in self.operations:
            options = replace(options, refine=0)
        try:
            snap = self.documents.read_layer()
        except UnsupportedDocument as exc:
            self.message(str(exc), error=True)
            return False
        display = self.style_display_name(options.style)
        client = self._client()
        if client is None:
            return False

        def work(progress: Any, cancel: Any) -> Any:
            result = client.stylize(
                snap.data, snap.rect.width, snap.rect.height, snap.pixel_format, options.style,
                strength=options.strength, preserve_colors=options.preserve_colors, refine=options.refine,
                progress=progress, cancel=cancel,
            )
            data = self._checked(result, snap.rect.width, snap.rect.height, snap.pixel_format)
            if snap.selection is not None:
                # Per-pixel Python for soft selections: done here so the GUI thread never waits on it.
                data = apply_selection(data, snap.selection, snap.pixel_format)
            return data

        def done(data: bytes) -> None:
            name = layer_name(display, self.documents.layer_names(snap))
            self.documents.add_layer(snap, data, name)
            self.message(f"Added layer “{name}”.")

        self.settings = replace(self.settings.with_options(options), last_style=options.style)
        self.settings.save(self._write)
        self._start("stylize", f"Applying {display}…", work, done)
        return True

    def apply_last(self) -> bool:
        if not self.settings.last_style:
            self.message("No Impasto style has been applied yet: use Apply Impasto style… first.", error=True)
            return False
        return self.apply(replace(self.settings.options, style=self.settings.last_style))

    def upscale(self, scale: int) -> bool:
        """Upscale the visible image (or the selection's bounds) into a new document."""
        if self.busy:
            self.message("Impasto is still working on the previous job.", error=True)
            return False
        if scale not in FACTORS:
            factors = ", ".join(map(str, FACTORS[:-1])) + f" or {FACTORS[-1]}"
            self.message(f"Upscaling works by {factors}, not {scale}.", error=True)
            return False
        try:
            snap = self.documents.read_image()
        except UnsupportedDocument as exc:
            self.message(str(exc), error=True)
            return False
        client = self._client()
        if client is None:
            return False
        w, h = snap.rect.width, snap.rect.height

        def work(progress: Any, cancel: Any) -> Any:
            result = client.upscale(snap.data, w, h, snap.pixel_format, scale,
                                    progress=progress, cancel=cancel)
            return self._checked(result, w * scale, h * scale, snap.pixel_format)

        def done(data: bytes) -> None:
            self.documents.open_image(snap, data, w * scale, h * scale)
            self.message(f"Opened the ×{scale} image ({w * scale}×{h * scale}) as a new document.")

        self.settings = replace(self.settings, upscale=scale)
        self.settings.save(self._write)
        self._start("upscale", f"Upscaling ×{scale}…", work, done)
        return True

    @staticmethod
    def _checked(result: Any, width: int, height: int, pixel_format: str) -> bytes:
        data, rw, rh, fmt = result
        if (rw, rh, fmt) != (width, height, pixel_format):
            raise RuntimeError(
                f"the backend sent a {rw}×{rh} {fmt} image, expected {width}×{height} {pixel_format}"
            )
        return data

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self._each("show_busy", True, "Cancelling…")

    # -- the GUI thread's tick ----------------------------------------------------------------------

    def poll(self) -> None:
        if self._refresh_job is not None:
            for event in self._refresh_job.poll():
                if event.kind != PROGRESS:
                    self._refresh_finished(event)
        elif self.connected is False and self.clock() >= self._next_retry:
            if self._retry_until and self.clock() > self._retry_until:
                self._retry_until = 0.0
                self.message("The backend did not answer in time; check its settings.", error=True)
            self._next_retry = self.clock() + (RETRY_SECONDS if self._retry_until else IDLE_RETRY_SECONDS)
            self.refresh()
        if self.job is None:
            return
        for event in self.job.poll():
            if event.kind == PROGRESS:
                self._each("show_progress", event.stage, event.fraction, event.position)
            else:
                self._finish(event)

    def _finish(self, event: Event) -> None:
        job, done = self.job, self._job_done
        self.job, self._job_done = None, None
        self._each("show_busy", False, "")
        if job is not None and job.cancelled:
            # A result that arrives after Cancel is dropped: the user was promised no change.
            self.message("Cancelled; the document was not changed.")
            return
        if event.kind == ERROR:
            unreachable, text = describe_error(event.error or Exception("unknown"))
            if unreachable and self.connected is not False:
                self.connected = False
                self._each("show_status", False, self._status_text())
            self.message(text, error=True)
            return
        try:
            if done is not None:
                done(event.result)
        except UnsupportedDocument as exc:
            self.message(str(exc), error=True)
        except Exception as exc:  # noqa: BLE001 - shown in the docker rather than lost in Krita's log
            self.message(f"Could not add the result: {exc}", error=True)

    def wait(self, timeout: float = 60.0, step: float = 0.02) -> bool:
        """Poll until no job runs (headless use and tests); False on timeout."""
        end = time.monotonic() + timeout
        while self.job is not None or self._refresh_job is not None:
            if time.monotonic() > end:
                return False
            time.sleep(step)
            self.poll()
        return True

    def shutdown(self) -> None:
        if self.job is not None:
            self.job.cancel()
        self.server.stop()
