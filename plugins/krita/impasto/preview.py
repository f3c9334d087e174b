"""The live preview's timing, in plain Python: requests are debounced, one preview job runs at a time,
and a running one is cancelled as soon as what it would show is no longer wanted.

The preview stylizes a reduced copy of the layer (Krita's thumbnail), never the document. A network paints
strokes of a fixed size in the pixels it processes, so to show the strokes as the layer will get them the
reduced copy is processed at the size the whole layer would be, up to PREVIEW_WORK_SIDE; past that the
preview's strokes come out larger than the layer's and its caption says so."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from impasto_common import DONE, PROGRESS, SCALE

from .connection import describe_error
from .formats import UnsupportedDocument
from .jobs import Event, Job
from .settings import StyleOptions

DEBOUNCE_SECONDS = 0.15  # a slider drag sends many changes: preview where it stops
PREVIEW_SIDE = 448  # long side of the reduced copy
PREVIEW_WORK_SIDE = 896  # long side the preview is processed at, at most: about 0.2 s on a fast CPU runtime


def preview_scale(scale: float, shrink: float, thumb_long: int) -> tuple[float, bool]:
    """(processing scale for the reduced copy, whether its strokes match the layer's) for the layer's
    `scale` when the copy is `shrink` times the layer's size."""
    exact = scale / max(shrink, 1e-6)
    cap = min(SCALE.high, PREVIEW_WORK_SIDE / max(1, thumb_long))
    return SCALE.clamp(min(exact, cap)), exact <= cap * 1.02


Start = Callable[[StyleOptions], "Job | None"]  # reads the layer and starts a job, or None when it cannot
Show = Callable[[Event, StyleOptions], None]  # gets each finished job's DONE or ERROR, never a cancelled one's


class Previewer:
    """Holds no callbacks (they come with each poll), so it makes no reference cycle with its owner."""

    def __init__(self) -> None:
        self.wanted: StyleOptions | None = None
        self.latest: StyleOptions | None = None  # the last options asked for, to redo on a layer change
        self.due = 0.0
        self.job: Job | None = None
        self.running: StyleOptions | None = None

    def request(self, options: StyleOptions, now: float) -> None:
        self.wanted = self.latest = options
        self.due = now + DEBOUNCE_SECONDS
        if self.job is not None and self.running != options:
            self.job.cancel()  # replaced: its result would be stale by the time it came

    def again(self, now: float) -> None:
        """Preview the latest options once more (the layer changed)."""
        if self.latest is not None:
            self.request(self.latest, now)
            if self.job is not None:
                self.job.cancel()

    def stop(self) -> None:
        """Cancel the running preview and drop the pending one (live preview turned off, Apply started)."""
        if self.job is not None:
            self.job.cancel()
        self.wanted = None

    def poll(self, now: float, allowed: bool, start: Start, show: Show) -> None:
        if self.job is not None:
            for event in self.job.poll():
                if event.kind == PROGRESS:
                    continue
                job, options = self.job, self.running
                self.job = self.running = None
                if not job.cancelled and options is not None:
                    show(event, options)
        if self.job is None and self.wanted is not None and allowed and now >= self.due:
            options, self.wanted = self.wanted, None
            self.job = start(options)
            self.running = options if self.job is not None else None


class LivePreview:
    """The Controller's live-preview part (mixed in): reads the reduced copy and talks to the backend."""

    settings: Any
    documents: Any
    clock: Callable[[], float]
    preview: Previewer
    _each: Callable[..., None]  # (View method, *args): tell every view
    _client: Callable[..., Any]  # (quiet) -> a client, or None
    style_display_name: Callable[[str], str]

    def request_preview(self, options: StyleOptions) -> None:
        """The docker's settings changed: preview them (debounced) if live preview is on."""
        if self.settings.live_preview and options.style:
            self.preview.request(options, self.clock())

    def _start_preview(self, options: StyleOptions) -> Job | None:
        try:
            snap = self.documents.read_preview(PREVIEW_SIDE, self.settings.from_source)
        except UnsupportedDocument as exc:
            self._each("show_preview", None, str(exc))
            return None
        client = self._client(quiet=True)
        if client is None:
            return None
        scale, exact = preview_scale(options.scale, snap.shrink, max(snap.width, snap.height))
        display = self.style_display_name(options.style)
        caption = f"{display}, strength {round(options.strength * 100)}%"
        if not exact:
            caption += " (strokes larger than on the layer)"

        def work(progress: Any, cancel: Any) -> Any:
            data, w, h, _ = client.stylize(snap.data, snap.width, snap.height, "BGRA_U8", options.style,
                                           strength=options.strength, preserve_colors=options.preserve_colors,
                                           scale=scale, cancel=cancel)
            return (data, w, h), caption

        return Job("preview", work).start()

    def _preview_finished(self, event: Event, options: StyleOptions) -> None:
        if event.kind == DONE:
            image, caption = event.result
            self._each("show_preview", image, caption)
        else:
            unreachable, text = describe_error(event.error or Exception("unknown"))
            if not unreachable:
                self._each("show_preview", None, f"No preview: {text}")
