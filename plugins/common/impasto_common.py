"""What the Krita plug-in, the GIMP plug-in and their client share: pixel formats, rectangles, the backend's
default address, the request options' defaults and ranges, and the words of a job's progress.

Standard library only and importable on Python 3.8 and later: editors bundle their own, sometimes old,
Pythons. `impasto plugin install` copies this file beside each plugin (into its `_vendor` folder, next to
`impasto_client`). The plugins may not import the backend, so the backend keeps the same values
(impasto.engine.pixels, impasto/limits.py, impasto.serve.jobs); tests/unit/test_plugin_common.py checks
that the two agree.
"""

from __future__ import annotations

from collections.abc import Iterable  # in annotations only, which stay strings here (3.8)
from dataclasses import dataclass
from typing import Callable, NamedTuple  # noqa: UP035 - collections.abc.Callable[...] fails on 3.8

# Where `impasto serve` listens unless told otherwise.
DEFAULT_ADDRESS = "127.0.0.1:50051"

# -- pixel formats -----------------------------------------------------------------------------------
# On the wire a format is named ORDER_DEPTH[_LINEAR], e.g. RGBA_U8, BGRA_U16, RGBA_F32_LINEAR: channels
# interleaved in ORDER, each a little-endian DEPTH; _LINEAR marks linear-light float values.

ORDERS = ("RGBA", "BGRA", "RGB", "BGR")
DEPTH_BYTES = {"U8": 1, "U16": 2, "F16": 2, "F32": 4}  # bytes per channel
LINEAR = "LINEAR"


def parse_format(name: str) -> tuple[str, str, bool]:
    """(order, depth, linear) of a pixel format name, read as the backend reads it (case and surrounding
    spaces do not matter); ValueError for anything else."""
    parts = name.strip().upper().split("_")
    linear = parts[-1] == LINEAR
    if linear:
        parts = parts[:-1]
    if len(parts) != 2 or parts[0] not in ORDERS or parts[1] not in DEPTH_BYTES:
        raise ValueError(f"unknown pixel format {name!r}")
    return parts[0], parts[1], linear


def format_name(order: str, depth: str, linear: bool = False) -> str:
    """The wire name for a layout, e.g. ("RGBA", "F32", True) -> "RGBA_F32_LINEAR"."""
    return f"{order}_{depth}" + (f"_{LINEAR}" if linear else "")


def bytes_per_pixel(pixel_format: str) -> int:
    """Bytes one pixel of `pixel_format` occupies (e.g. BGRA_U16: 8)."""
    order, depth, _ = parse_format(pixel_format)
    return len(order) * DEPTH_BYTES[depth]


def buffer_size(width: int, height: int, pixel_format: str) -> int:
    """Bytes an interleaved `pixel_format` image of width x height occupies."""
    return width * height * bytes_per_pixel(pixel_format)


# -- rectangles --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rect:
    """A pixel rectangle; x and y may be negative (a layer can reach past the canvas)."""

    x: int
    y: int
    width: int
    height: int

    @property
    def empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    def intersect(self, other: Rect) -> Rect:
        """The overlap of the two; empty (zero width or height) when they do not meet."""
        x0, y0 = max(self.x, other.x), max(self.y, other.y)
        x1 = min(self.x + self.width, other.x + other.width)
        y1 = min(self.y + self.height, other.y + other.height)
        return Rect(x0, y0, max(0, x1 - x0), max(0, y1 - y0))

    def expand(self, margin: int) -> Rect:
        return Rect(self.x - margin, self.y - margin, self.width + 2 * margin, self.height + 2 * margin)

    def translate(self, dx: int, dy: int) -> Rect:
        return Rect(self.x + dx, self.y + dy, self.width, self.height)

    def scale(self, factor: int) -> Rect:
        return Rect(self.x * factor, self.y * factor, self.width * factor, self.height * factor)


# -- request options ---------------------------------------------------------------------------------

class Range(NamedTuple):
    """The values an option accepts, low to high inclusive, and its default: the backend's own."""

    name: str
    low: float
    high: float
    default: float

    def check(self, value: float) -> None:
        """ValueError, worded for users, when the backend would refuse `value`."""
        if not self.low <= value <= self.high:
            raise ValueError(f"{self.name} must be between {self.low:g} and {self.high:g}, not {value}")

    def clamp(self, value: float) -> float:
        return min(self.high, max(self.low, value))


STRENGTH = Range("strength", 0.0, 1.0, 1.0)  # blend with the original: 0 none, 1 full
REFINE = Range("refine", 0, 1000, 0)  # Gatys iterations after the network pass; 0: none
SCALE = Range("scale", 0.25, 4.0, 1.0)  # processing scale of a stylization: larger means finer strokes
FACTORS = (2, 4, 8)  # what upscaling multiplies width and height by
DEFAULT_FACTOR = 2

# -- a job's progress --------------------------------------------------------------------------------
# The backend's words (impasto.serve.jobs): a job reports PROGRESS while it waits and works, then ends
# with DONE (carrying its result) or ERROR (carrying the exception). Stages in WAITING_STAGES wait rather
# than work; QUEUED comes with the number of jobs ahead of this one.

PROGRESS, DONE, ERROR = "progress", "done", "error"
QUEUED, LOADING = "queued", "loading"
WAITING_STAGES = (QUEUED, LOADING)

# progress(stage, fraction of the stage done in 0..1, position: jobs ahead in the queue, 0 once running)
Progress = Callable[[str, float, int], None]

# -- naming results ----------------------------------------------------------------------------------
# One rule in every editor, so a result reads the same in Krita and in GIMP.

STYLIZE, UPSCALE = "stylize", "upscale"


def layer_name(display_name: str, op: str = STYLIZE, factor: int = 1, existing: Iterable[str] = ()) -> str:
    """The name of a result layer (or image): a stylized one after its style's display name ("The Scream"),
    an upscaled one after what was upscaled and the factor ("photo ×2"). A name already in `existing`
    gets the next free number ("The Scream 2")."""
    if op == UPSCALE:
        base = f"{display_name.strip() or 'Untitled'} ×{factor}"
    else:
        base = display_name.strip() or "Impasto"
    taken = set(existing)
    if base not in taken:
        return base
    n = 2
    while f"{base} {n}" in taken:
        n += 1
    return f"{base} {n}"
