"""What the docker and the actions do, in plain Python: no Krita, no Qt.

The controller owns the backend connection state, the one running image job, the live preview and the
settings. Editor access goes through `documents` (kritadoc.KritaDocuments in Krita, a fake in tests); every
view (a docker per Krita window, a progress popup) gets the same updates, each through the View methods it
has. `poll()` must be called regularly on the GUI thread: it is where finished network jobs touch the
document, so Krita is only ever called from that thread.

Everything the docker shows must stay true: a cheap server_info every HEALTH_SECONDS notices a backend
that went away (or came back) within a few seconds, and a message that stops being true (the layer it
names was undone, the backend it says is starting has answered) is taken down."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from impasto_common import ERROR, PROGRESS, STYLIZE, layer_name

from .connection import (  # noqa: F401 - re-exported: the tests and the extension know them from here
    HEALTH_SECONDS,
    IDLE_RETRY_SECONDS,
    RETRY_SECONDS,
    ClientFactory,
    Connection,
    default_client_factory,
    describe_error,
)
from .formats import UnsupportedDocument, apply_selection
from .jobs import Event, Job
from .limits import Choice, stylize_problem, upscale_choices
from .preview import LivePreview, Previewer
from .progress import ProgressTracker
from .server_process import ServerProcess
from .settings import Read, Settings, StyleOptions, Write

WATCH_SECONDS = 0.5  # document sizes, stale messages, the preview's layer, the time-left text
NOTE_GRACE_SECONDS = 2.0  # how long a message may wait to be seen true before it counts as stale
Valid = Callable[[], bool]


def _checked(result: Any, width: int, height: int, pixel_format: str) -> bytes:
    data, rw, rh, fmt = result
    if (rw, rh, fmt) != (width, height, pixel_format):
        raise RuntimeError(f"the backend sent a {rw}×{rh} {fmt} image, expected {width}×{height} {pixel_format}")
    return data


class View(Protocol):
    def show_status(self, connected: bool | None, text: str) -> None: ...
    def show_models(self, styles: list[Any], upscalers: list[Any], operations: tuple[str, ...]) -> None: ...
    def show_busy(self, busy: bool, text: str) -> None: ...
    def show_progress(self, stage: str, fraction: float, position: int) -> None: ...
    def show_activity(self, text: str, percent: int | None) -> None: ...
    def show_message(self, text: str, error: bool = False) -> None: ...
    def show_limits(self) -> None: ...
    def show_preview(self, image: tuple[bytes, int, int] | None, text: str) -> None: ...


class Controller(Connection, LivePreview):
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
        self.info: Any = None  # the backend's last ServerInfo
        self.styles: list[Any] = []
        self.upscalers: list[Any] = []
        self.operations: tuple[str, ...] = ()
        self.job: Job | None = None
        self.tracker: ProgressTracker | None = None
        self._job_done: Callable[[Any], None] | None = None
        self._probe: Job | None = None  # server_info (+ list_models when `_probe_full`) off the GUI thread
        self._probe_full = False
        self._pending_full = False
        self._retry_until = 0.0
        self._next_probe = 0.0
        self._refresh_error = ""
        self._note: Valid | None = None  # while the message shown is true; None: no condition
        self._note_seen, self._note_since = False, 0.0
        self._next_watch = 0.0
        self.sizes: tuple[Any, Any] = (None, None)  # (layer, image) (width, height) Apply/Upscale would send
        self._preview_key: object = None
        self.preview = Previewer()
        self.closed = False  # after shutdown(): poll() does nothing more

    # -- views --------------------------------------------------------------------------------------

    def add_view(self, view: View) -> None:
        self.views.append(view)
        for method, *args in (("show_status", self.connected, self._status_text()),
                              ("show_models", self.styles, self.upscalers, self.operations),
                              ("show_busy", self.busy, "")):
            show = getattr(view, method, None)
            if show is not None:
                show(*args)

    def remove_view(self, view: View) -> None:
        if view in self.views:
            self.views.remove(view)

    def _each(self, method: str, *args: Any) -> None:
        for view in list(self.views):
            show = getattr(view, method, None)  # a popup has fewer methods than the docker
            if show is None:
                continue
            try:
                show(*args)
            except RuntimeError as exc:
                if "has been deleted" not in str(exc):
                    raise
                self.remove_view(view)  # its widgets went with its window (Krita quitting, say)

    def message(self, text: str, error: bool = False, valid: Valid | None = None) -> None:
        """Show `text`; with `valid`, take it down again once valid() turns False."""
        self._note = valid if text else None
        self._note_seen, self._note_since = False, self.clock()
        self._each("show_message", text, error)

    # -- settings -----------------------------------------------------------------------------------

    def update_settings(self, **changes: Any) -> None:
        reconnect = any(changes.get(k, getattr(self.settings, k)) != getattr(self.settings, k)
                        for k in ("address", "token"))
        rewatch = changes.get("from_source", self.settings.from_source) != self.settings.from_source
        self.settings = replace(self.settings, **changes)
        self.settings.save(self._write)
        if reconnect:
            self.refresh()
        if rewatch:
            self._next_watch = 0.0
        if not self.settings.live_preview:
            self.preview.stop()

    def style_display_name(self, style: str) -> str:
        for model in self.styles:
            if model.name == style:
                return model.display_name or style
        return style

    # -- limits -------------------------------------------------------------------------------------

    @property
    def max_pixels(self) -> int:
        return int(self.info.max_pixels) if self.info is not None else 0

    def upscale_choices(self) -> list[Choice]:
        """Each factor, and whether the image (or selection) Upscale would send now fits the backend."""
        image = self.sizes[1] or (0, 0)
        scales = [m.scale for m in self.upscalers] if self.connected else None
        return upscale_choices(image[0], image[1], self.max_pixels, scales)

    def stylize_problem(self, scale: float) -> str:
        """Why Apply would be refused at `scale` for the layer it would send now; "" when it would not."""
        layer = self.sizes[0]
        return stylize_problem(layer[0], layer[1], scale, self.max_pixels) if layer else ""

    def _watch(self) -> None:
        """The GUI tick's slower half: what the document looks like now, and what follows from it."""
        self._next_watch = self.clock() + WATCH_SECONDS
        try:
            sizes = self.documents.sizes(self.settings.from_source)
            key = self.documents.preview_key(self.settings.from_source)
        except Exception:  # noqa: BLE001 - a document closing under us must not stop the timer
            sizes, key = (None, None), None
        if sizes != self.sizes:
            self.sizes = sizes
            self._each("show_limits")
        if key != self._preview_key:
            self._preview_key = key
            if key is None:
                self.preview.stop()
                self._each("show_preview", None, "Select a paint layer to see a preview.")
            elif self.settings.live_preview:
                self.preview.again(self.clock())
        self._check_note()
        if self.tracker is not None:
            report = self.tracker.report(self.clock())
            self._each("show_activity", report.text, report.percent)

    def _check_note(self) -> None:
        """Take the message down once what it says stops being true. With a view open, Krita adds a layer
        a moment (an event loop turn or more) after it was asked to: a note goes once it has been seen
        true and no longer is, or when it was never seen true within NOTE_GRACE_SECONDS."""
        if self._note is None:
            return
        try:
            true = bool(self._note())
        except Exception:  # noqa: BLE001 - e.g. the document is gone: so is what the note says
            true, self._note_seen = False, True
        if true:
            self._note_seen = True
        elif self._note_seen or self.clock() - self._note_since > NOTE_GRACE_SECONDS:
            self.message("")

    # -- image jobs ---------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.job is not None

    def _start(self, name: str, text: str, work: Any, done: Callable[[Any], None]) -> None:
        self.preview.stop()  # the job needs the backend more than the preview does
        self.job = Job(name, work).start()
        self._job_done = done
        self.tracker = ProgressTracker(text.rstrip("…"), self.clock())
        self.message("")
        self._each("show_busy", True, text)

    def apply(self, options: StyleOptions | None = None) -> bool:
        """Stylize the active layer (or the selection on it) into a new layer above it. When the active
        layer is an Impasto result (and `from_source` is on), the layer it was made from is stylized."""
        if self.busy:
            self.message("Impasto is still working on the previous job.", error=True)
            return False
        options = options or self.settings.options
        if not options.style:
            self.message("Pick a style first.", error=True)
            return False
        if "refine" not in self.operations:
            options = replace(options, refine=0)
        from_source = self.settings.from_source
        try:
            self.sizes = self.documents.sizes(from_source)
            problem = self.stylize_problem(options.scale)
            if problem:
                self.message(problem, error=True)
                return False
            snap = self.documents.read_layer(from_source)
        except UnsupportedDocument as exc:
            self.message(str(exc), error=True)
            return False
        display = self.style_display_name(options.style)
        client = self._client()
        if client is None:
            return False

        # The worker gets plain values only, never `snap`: Krita objects must be freed on the GUI thread,
        # and the last reference to what a worker holds can go away on the worker's thread.
        pixels, width, height, fmt, mask = snap.data, snap.rect.width, snap.rect.height, snap.pixel_format, \
            snap.selection

        def work(progress: Any, cancel: Any) -> Any:
            result = client.stylize(
                pixels, width, height, fmt, options.style,
                strength=options.strength, preserve_colors=options.preserve_colors, refine=options.refine,
                scale=options.scale, progress=progress, cancel=cancel,
            )
            data = _checked(result, width, height, fmt)
            if mask is not None:
                # Per-pixel Python for soft selections: done here so the GUI thread never waits on it.
                data = apply_selection(data, mask, fmt)
            return data

        def done(data: bytes) -> None:
            name = layer_name(display, STYLIZE, existing=self.documents.layer_names(snap))
            layer = self.documents.add_layer(snap, data, name)
            text = f"Added layer “{name}”."
            if snap.result_of:
                text = f"Added layer “{name}” from “{snap.source_name}”, which “{snap.result_of}” was made from."
            self.message(text, valid=lambda: self.documents.layer_exists(snap.doc, layer))

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
        try:
            self.sizes = self.documents.sizes(self.settings.from_source)
            choice = next((c for c in self.upscale_choices() if c.factor == scale), None)
            if choice is None or not choice.enabled:
                factors = ", ".join(f"×{c.factor}" for c in self.upscale_choices() if c.enabled) or "none"
                self.message(choice.reason if choice else f"Upscaling works by {factors}, not ×{scale}.",
                             error=True)
                return False
            snap = self.documents.read_image()
        except UnsupportedDocument as exc:
            self.message(str(exc), error=True)
            return False
        client = self._client()
        if client is None:
            return False
        pixels, w, h, fmt = snap.data, snap.rect.width, snap.rect.height, snap.pixel_format  # no `snap`: see apply

        def work(progress: Any, cancel: Any) -> Any:
            result = client.upscale(pixels, w, h, fmt, scale, progress=progress, cancel=cancel)
            return _checked(result, w * scale, h * scale, fmt)

        def done(data: bytes) -> None:
            new = self.documents.open_image(snap, data, w * scale, h * scale)
            self.message(f"Opened the ×{scale} image ({w * scale}×{h * scale}) as a new document.",
                         valid=lambda: new is None or self.documents.is_open(new))

        self.settings = replace(self.settings, upscale=scale)
        self.settings.save(self._write)
        self._start("upscale", f"Upscaling ×{scale}…", work, done)
        return True

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self._each("show_busy", True, "Cancelling…")

    # -- the GUI thread's tick ----------------------------------------------------------------------

    def poll(self) -> None:
        if self.closed:
            return
        now = self.clock()
        self._poll_probe(now)
        if now >= self._next_watch:
            self._watch()
        self.preview.poll(now, self.connected is True and self.job is None, self._start_preview,
                          self._preview_finished)
        if self.job is None:
            return
        for event in self.job.poll():
            if event.kind == PROGRESS:
                if self.tracker is not None:
                    self.tracker.update(event.stage, event.fraction, event.position, self.clock())
                    report = self.tracker.report(self.clock())
                    self._each("show_activity", report.text, report.percent)
                self._each("show_progress", event.stage, event.fraction, event.position)
            else:
                self._finish(event)

    def _finish(self, event: Event) -> None:
        job, done = self.job, self._job_done
        self.job, self._job_done, self.tracker = None, None, None
        self._each("show_busy", False, "")
        if job is not None and job.cancelled:
            # A result that arrives after Cancel is dropped: the user was promised no change.
            self.message("Cancelled; the document was not changed.")
            return
        if event.kind == ERROR:
            unreachable, text = describe_error(event.error or Exception("unknown"))
            if unreachable and self.connected is not False:
                self.connected = False
                self._next_probe = self.clock() + RETRY_SECONDS
                self._each("show_status", False, self._status_text())
            self.message(text, error=True, valid=(lambda: self.connected is not True) if unreachable else None)
            return
        try:
            if done is not None:
                done(event.result)
        except UnsupportedDocument as exc:
            self.message(str(exc), error=True)
        except Exception as exc:  # noqa: BLE001 - shown in the docker rather than lost in Krita's log
            self.message(f"Could not add the result: {exc}", error=True)

    def wait(self, timeout: float = 60.0, step: float = 0.02) -> bool:
        """Poll until no job, probe or preview runs (headless use and tests); False on timeout."""
        end = time.monotonic() + timeout
        self.poll()
        while (self.job is not None or self._probe is not None or self._pending_full or self.preview.job
               or self.preview.wanted is not None and self.connected is True and self.clock() >= self.preview.due):
            if time.monotonic() > end:
                return False
            time.sleep(step)
            self.poll()
        return True

    def shutdown(self, wait: float = 2.0) -> None:
        """Krita is closing: no more checks, the job and the preview cancelled, our backend stopped. Waits
        (a little) for the worker threads, so that none is still inside the network client when Krita's
        Python shuts down."""
        self.closed = True
        jobs = [j for j in (self.job, self._probe, self.preview.job) if j is not None]
        for job in jobs:
            job.cancel()
        self.preview.stop()
        end = time.monotonic() + wait
        for job in jobs:
            job.join(max(0.0, end - time.monotonic()))
        self.server.stop()
        # Let go of every closure that holds Krita objects, here on the GUI thread: left in reference
        # cycles, they would be freed whenever the garbage collector runs, on whatever thread.
        self._note = self._job_done = self.job = None
        self.views.clear()
