"""The GIMP plug-in's decisions, in plain Python so they can be unit-tested without GIMP or gi.

impasto.py asks GIMP for facts (precision nick, layer sizes, offsets, selection bounds), hands them to
these functions, and carries out what they return. Nothing here imports gi, numpy or the client; what
the plug-ins share (formats, Rect, option ranges, progress words) comes from impasto_common.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from impasto_common import (
    DEFAULT_ADDRESS,
    FACTORS,
    STRENGTH,
    WAITING_STAGES,
    Progress,
    Rect,
    bytes_per_pixel,
    format_name,
)

T = TypeVar("T")

# The procedure's default factor. Krita's is DEFAULT_FACTOR (x2); GIMP has offered x4 from the start.
DEFAULT_FACTOR = 4
# Context read around the selection so the network sees past its edges; the result is masked to the
# selection anyway. Style nets have a wide receptive field, SR nets a narrow one.
STYLIZE_MARGIN = 32
UPSCALE_MARGIN = 8


# -- pixel formats -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Formats:
    """How one drawable travels: `babl` is what Gegl reads and writes, `wire` the backend's pixel format
    name for the same bytes."""

    babl: str
    wire: str
    bytes_per_pixel: int


# Babl component type -> wire depth.
_DEPTHS = {"u8": "U8", "u16": "U16", "half": "F16", "float": "F32"}


def formats_for_precision(precision_nick: str, has_alpha: bool) -> Formats:
    """Pick the Babl format and wire format for a GIMP precision, given as its enum nick
    ("u8-non-linear", "u16-linear", "half-perceptual", "float-linear", ...).

    Integer images travel in their own depth with sRGB-encoded values (the networks were trained on
    those; Babl converts a linear integer image on the way out and back). The wire has no U32 or double,
    so those travel as float, which holds them without visible loss. Float images keep their linearity:
    the backend decodes `_LINEAR` itself, and values above 1 survive the trip.
    """
    component, _, trc = precision_nick.partition("-")
    if component not in ("u8", "u16", "u32", "half", "float", "double") or not trc:
        raise ValueError(f"unknown GIMP precision {precision_nick!r}")
    if component in ("u32", "double"):
        component = "float"
    linear = trc == "linear" and component in ("half", "float")
    channels = "RGBA" if has_alpha else "RGB"
    babl_model = channels if linear else "'".join(channels[:3]) + "'" + channels[3:]
    wire = format_name(channels, _DEPTHS[component], linear)
    return Formats(f"{babl_model} {component}", wire, bytes_per_pixel(wire))


# -- regions -----------------------------------------------------------------------------------------

def work_region(mask_bounds: Rect | None, layer_width: int, layer_height: int, margin: int) -> Rect | None:
    """The part of a drawable to send, in the drawable's own coordinates.

    `mask_bounds` is what `drawable.mask_intersect()` reports (None when it says the selection misses
    the drawable); it is already the whole drawable when nothing is selected. The margin adds context
    around a selection, clipped to the drawable. None: nothing to do.
    """
    if mask_bounds is None or mask_bounds.empty:
        return None
    layer = Rect(0, 0, layer_width, layer_height)
    region = mask_bounds.intersect(layer)
    if region.empty:
        return None
    if region != layer:
        region = region.expand(margin).intersect(layer)
    return region


def stylize_placement(region: Rect, layer_offsets: tuple[int, int]) -> Rect:
    """Where the stylized layer goes in image coordinates: over the region it was made from."""
    return region.translate(*layer_offsets)


# -- arguments and requests --------------------------------------------------------------------------

def parse_factor(choice: str | int) -> int:
    """The upscale factor from the procedure's choice nick ("x4") or a plain number."""
    text = str(choice).strip().lower().lstrip("x×")
    if not text.isdigit() or int(text) not in FACTORS:
        raise ValueError(f"upscale factor must be one of {', '.join(f'x{f}' for f in FACTORS)}, "
                         f"not {choice!r}")
    return int(text)


def backend_address(environ: Mapping[str, str] = os.environ) -> tuple[str, str | None]:
    """The backend's address and token: IMPASTO_ADDRESS / IMPASTO_TOKEN if set (a backend started with
    `impasto serve --address ...` elsewhere), else the default loopback port."""
    address = environ.get("IMPASTO_ADDRESS", "").strip() or DEFAULT_ADDRESS
    token = environ.get("IMPASTO_TOKEN", "").strip() or None
    return address, token


@dataclass(frozen=True)
class ImageJob:
    """One request to the backend: pixels of `region` of a drawable, read in `formats`."""

    region: Rect
    formats: Formats

    @property
    def size(self) -> int:
        return self.region.width * self.region.height * self.formats.bytes_per_pixel

    def image_args(self, data: bytes) -> dict[str, Any]:
        if len(data) != self.size:
            size = f"{self.region.width}x{self.region.height}"
            raise ValueError(f"read {len(data)} bytes from GIMP for a {size} {self.formats.babl} region; "
                             f"expected {self.size}")
        return {"data": data, "width": self.region.width, "height": self.region.height,
                "pixel_format": self.formats.wire}


def upscale_request(job: ImageJob, data: bytes, factor: int, model: str | None) -> dict[str, Any]:
    """Keyword arguments for ImpastoClient.upscale. GIMP hands an empty string argument back as None
    once it has stored it with the procedure's last values."""
    return {**job.image_args(data), "scale": factor, "model": (model or "").strip()}


def stylize_request(job: ImageJob, data: bytes, style: str | None, strength: float, preserve_colors: bool,
                    refine: int) -> dict[str, Any]:
    """Keyword arguments for ImpastoClient.stylize."""
    style = (style or "").strip()
    if not style:
        raise ValueError("choose a style (one of the backend's style models)")
    STRENGTH.check(strength)
    return {**job.image_args(data), "style": style, "strength": float(strength),
            "preserve_colors": bool(preserve_colors), "refine": int(refine)}


def check_result(result: Any, job: ImageJob, factor: int = 1) -> bytes:
    """The result's bytes, after checking they are what GIMP will be told they are: a backend that
    answered in another size or format would otherwise scramble the layer."""
    data, width, height, pixel_format = result
    want = (job.region.width * factor, job.region.height * factor, job.formats.wire)
    if (width, height, pixel_format) != want:
        raise ValueError(f"the backend returned {width}x{height} {pixel_format}; "
                         f"expected {want[0]}x{want[1]} {want[2]}")
    if len(data) != width * height * job.formats.bytes_per_pixel:
        raise ValueError(f"the backend returned {len(data)} bytes for a {width}x{height} {pixel_format} "
                         "image")
    return bytes(data)


# -- progress ----------------------------------------------------------------------------------------

def progress_mapper(update: Callable[[float], None], index: int, count: int,
                    stages: tuple[str, ...]) -> Progress:
    """A client progress callback for job `index` of `count` that reports overall progress to `update`.

    Each of the job's `stages` (e.g. ("stylize", "refine")) gets an equal part of the job's share,
    because the backend restarts the fraction at 0 for every stage. Waiting stages ("queued",
    "loading") leave the bar where it is; a stage not listed counts as the latest listed one seen (the
    backend may name sub-steps we do not know). The bar never moves back."""
    share = 1.0 / (count * max(len(stages), 1))
    done = [index / count]
    current = [0]

    def on_progress(stage: str, fraction: float, position: int) -> None:
        if stage in WAITING_STAGES:
            return
        if stage in stages:
            if stages.index(stage) < current[0]:
                return  # a late report of a finished stage
            current[0] = stages.index(stage)
        value = (index * len(stages) + current[0] + min(max(float(fraction), 0.0), 1.0)) * share
        if value > done[0]:
            done[0] = value
            update(value)

    return on_progress


# -- layer trees -------------------------------------------------------------------------------------

def flatten(items: Iterable[T], children: Callable[[T], Iterable[T]]) -> list[T]:
    """Every item of a layer tree, depth first, top to bottom: the same list for an image and its
    duplicate, so an item's index finds its copy."""
    out: list[T] = []
    for item in items:
        out.append(item)
        out.extend(flatten(children(item), children))
    return out


def user_message(exc: BaseException) -> str:
    """One line for GIMP's error dialog. Backend errors carry their own user-facing text."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"Impasto: {message}"
