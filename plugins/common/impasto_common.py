"""What the Krita plug-in, the GIMP plug-in and their client share: pixel formats, rectangles, the backend's
default address, the request options' defaults and ranges, the brush size, the arithmetic of the backend's
limits, and the words of a job's progress.

Standard library only and importable on Python 3.8 and later: editors bundle their own, sometimes old,
Pythons. `impasto plugin install` copies this file beside each plugin (into its `_vendor` folder, next to
`impasto_client`). The plugins may not import the backend, so the backend keeps the same values
(impasto.engine.pixels, impasto/limits.py, impasto.serve.jobs); tests/unit/test_plugin_common.py checks
that the two agree.
"""

from __future__ import annotations

import math
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

# -- brush size --------------------------------------------------------------------------------------
# The brush size is the inverse of the processing scale: a network paints strokes of a fixed size in the
# pixels it processes, so processing at half size (scale 0.5) makes the strokes twice as big on the layer.
# SCALE's range, inverted: 1/4 to 4. Krita shows it in percent, GIMP as a number.

BRUSH = Range("brush size", 1.0 / SCALE.high, 1.0 / SCALE.low, 1.0 / SCALE.default)


def brush_to_scale(brush: float) -> float:
    """The processing scale for a brush size, clamped to SCALE."""
    return SCALE.clamp(1.0 / max(brush, 1e-6))


def scale_to_brush(scale: float) -> float:
    return 1.0 / SCALE.clamp(scale)


# -- limits, checked before anything is sent ---------------------------------------------------------
# The backend refuses an image (or its upscaled or processing size) over server_info().max_pixels, and an
# upscaling factor it has no model for. The plugins work that out before the pixels travel; each editor
# words the outcome for its own users (Krita in sentences for its docker, GIMP in clauses for its errors),
# so what is here returns numbers and choices, and takes the wording as functions. A max_pixels of 0:
# the limit is unknown, and the backend decides.

def megapixels(pixels: int) -> str:
    """"12 MP", "1.5 MP", or "5,000 pixels" below a tenth of a megapixel."""
    mp = pixels / 1e6
    if mp < 0.1:
        return f"{pixels:,} pixels"
    return f"{mp:.0f} MP" if mp >= 10 else f"{mp:.1f} MP"


def size_text(width: int, height: int) -> str:
    """"4000×3000 (12 MP)"."""
    return f"{width}×{height} ({megapixels(width * height)})"


def processing_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The size the backend resizes a layer to before stylizing, rounded as it rounds."""
    return max(1, round(width * scale)), max(1, round(height * scale))


def smallest_brush(width: int, height: int, max_pixels: int) -> float:
    """The smallest brush size (in hundredths, within BRUSH) at which a width x height layer is processed
    within `max_pixels` (not 0)."""
    brush = max(BRUSH.low, math.ceil(100 * math.sqrt(width * height / max_pixels)) / 100)
    while brush < BRUSH.high:  # the square root's guess, checked against the backend's rounding
        w, h = processing_size(width, height, brush_to_scale(brush))
        if w * h <= max_pixels:
            break
        brush = round(brush + 0.01, 2)
    return min(brush, BRUSH.high)


class Oversize(NamedTuple):
    """Why the backend would refuse a stylization: the layer itself is over its limit (`processing` False:
    select a part of it), or the size it would be processed at (True: use a larger brush); that size."""

    processing: bool
    width: int
    height: int


def stylize_oversize(width: int, height: int, scale: float, max_pixels: int) -> Oversize | None:
    """What is over `max_pixels` when a width x height layer is stylized at `scale`; None: nothing (or the
    limit is unknown)."""
    if not max_pixels:
        return None
    if width * height > max_pixels:
        return Oversize(False, width, height)
    w, h = processing_size(width, height, scale)
    return Oversize(True, w, h) if w * h > max_pixels else None


@dataclass(frozen=True)
class Choice:
    """One upscaling factor and whether it can be used now; `reason` says why not."""

    factor: int
    enabled: bool
    reason: str = ""


def upscale_choices(width: int, height: int, max_pixels: int, too_large: Callable[[int, int, int], str],
                    model_scales: Iterable[int] | None = None,
                    no_model: Callable[[int], str] | None = None) -> list[Choice]:
    """Each factor of FACTORS for a width x height image: it needs a result within `max_pixels` (when known:
    not 0) and, when the models are known (`model_scales` not None), a model for the factor. The reasons
    are the editor's words: too_large(factor, width, height) of the result, no_model(factor)."""
    if model_scales is not None and no_model is None:
        raise TypeError("upscale_choices: model_scales needs no_model to say why a factor has no model")
    scales = None if model_scales is None else set(model_scales)
    choices = []
    for f in FACTORS:
        w, h = width * f, height * f
        if scales is not None and f not in scales and no_model is not None:
            choices.append(Choice(f, False, no_model(f)))
        elif max_pixels and w * h > max_pixels:
            choices.append(Choice(f, False, too_large(f, w, h)))
        else:
            choices.append(Choice(f, True))
    return choices


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
