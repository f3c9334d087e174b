"""The GIMP plug-in's decisions, in plain Python so they can be unit-tested without GIMP or gi.

impasto.py asks GIMP for facts (precision nick, layer sizes, offsets, selection bounds), hands them to
these functions, and carries out what they return. Nothing here imports gi, numpy or the client; what
the plug-ins share (formats, Rect, option ranges, progress words) comes from impasto_common.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import impasto_common as common
from impasto_common import (
    BRUSH,
    DEFAULT_ADDRESS,
    FACTORS,
    LOADING,
    QUEUED,
    STRENGTH,
    STYLIZE,  # noqa: F401  (re-exported: the plug-in calls logic.STYLIZE)
    UPSCALE,
    WAITING_STAGES,
    Choice,
    Progress,
    Rect,
    bytes_per_pixel,
    format_name,
    layer_name,
    megapixels,
    size_text,
    smallest_brush,
    stylize_oversize,
)

T = TypeVar("T")

# The procedure's default factor. Krita's is DEFAULT_FACTOR (x2); GIMP has offered x4 from the start.
DEFAULT_FACTOR = 4
# Context read around the selection so the network sees past its edges; the result is masked to the
# selection anyway. Style nets have a wide receptive field, SR nets a narrow one.
STYLIZE_MARGIN = 32
UPSCALE_MARGIN = 8


class PluginError(Exception):
    """A problem to show the user as is; `calling` marks bad arguments rather than a failed run."""

    def __init__(self, message: str, calling: bool = False) -> None:
        super().__init__(message)
        self.calling = calling


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


# -- brush size --------------------------------------------------------------------------------------
# impasto_common.BRUSH, as in Krita: the inverse of the backend's processing scale.

def brush_to_scale(brush: float) -> float:
    """The processing scale for a brush size (ValueError outside BRUSH)."""
    BRUSH.check(brush)
    return common.brush_to_scale(brush)


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
                    refine: int, brush: float = BRUSH.default) -> dict[str, Any]:
    """Keyword arguments for ImpastoClient.stylize; `brush` is the brush size (see BRUSH)."""
    style = (style or "").strip()
    if not style:
        raise ValueError("choose a style (one of the backend's style models)")
    STRENGTH.check(strength)
    return {**job.image_args(data), "style": style, "strength": float(strength),
            "preserve_colors": bool(preserve_colors), "refine": int(refine), "scale": brush_to_scale(brush)}


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


class ProgressStatus:
    """What the status bar says while the backend works: the client's reports (stage, fraction, queue
    position) of `count` jobs, each with `stages`, become `show(text, fraction)` calls, None meaning
    "unchanged". Waiting shows the queue position, working the percentage and, once the fraction has
    moved for a while, the time left at the rate it moved since the work began."""

    def __init__(self, show: Callable[[str | None, float | None], None], count: int, stages: tuple[str, ...],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._show = show
        self._count = count
        self._stages = stages
        self._clock = clock
        self._text = ""
        self.fraction = 0.0
        self._start: tuple[float, float] | None = None  # (time, fraction) when the work began

    def job(self, index: int, title: str) -> Progress:
        """The client's progress callback for job `index`; `title` starts each text ("The Scream")."""
        def moved(value: float) -> None:
            self.fraction = value

        mapper = progress_mapper(moved, index, self._count, self._stages)
        self.fraction = max(self.fraction, index / self._count)  # where the bar stands as this job begins

        def on_progress(stage: str, fraction: float, position: int) -> None:
            before = self.fraction
            if stage == QUEUED:
                text = f"{title}: waiting for the backend"
                if position > 0:
                    text += f", {position} job{'s' if position > 1 else ''} ahead"
            elif stage == LOADING:
                text = f"{title}: loading the model"
            else:
                mapper(stage, fraction, position)
                text = self.working_text(title, stage)
            self._emit(text, self.fraction if self.fraction != before else None)

        return on_progress

    def working_text(self, title: str, stage: str) -> str:
        now = self._clock()
        if self._start is None:
            self._start = (now, self.fraction)
        text = f"{title}: {'refining, ' if stage == 'refine' else ''}{math.floor(self.fraction * 100)}%"
        left = time_left(now - self._start[0], self.fraction - self._start[1], 1.0 - self.fraction)
        return text + (f", {left}" if left else "")

    def _emit(self, text: str, fraction: float | None) -> None:
        changed = text if text != self._text else None
        self._text = text
        if changed is not None or fraction is not None:
            self._show(changed, fraction)


def time_left(elapsed: float, done: float, remaining: float) -> str:
    """"about 40 s left" when `done` of the work took `elapsed` seconds and `remaining` is left; "" until
    the rate means something (a second and 2% in) or when nothing is left. Rounded up to 5 s, or to
    minutes past two minutes, so the text does not flicker."""
    if elapsed < 1.0 or done < 0.02 or remaining <= 0:
        return ""
    seconds = elapsed * remaining / done
    if seconds > 120:
        return f"about {math.ceil(seconds / 60)} min left"
    return f"about {max(5, 5 * math.ceil(seconds / 5))} s left"


# -- limits, checked before anything is sent ----------------------------------------------------------
# The backend refuses an image (or its upscaled or processing size) over server_info().max_pixels, and a
# model of another scale than the factor. Saying so before the pixels travel, in words about what the
# artist can change in GIMP, beats the backend's refusal after the upload. A max_pixels of 0: unknown.

def stylize_problem(width: int, height: int, brush: float, max_pixels: int) -> str:
    """Why the backend would refuse to stylize a width x height region at this brush size; "" if not."""
    over = stylize_oversize(width, height, brush_to_scale(brush), max_pixels)
    if over is None:
        return ""
    if not over.processing:
        return (f"the part of the layer to stylize is {size_text(width, height)}, and the backend takes at most "
                f"{megapixels(max_pixels)}: select a smaller part of the layer")
    return (f"at brush size {brush:g} the layer is painted at {size_text(over.width, over.height)}, over the "
            f"backend's {megapixels(max_pixels)}: use a brush size of {smallest_brush(width, height, max_pixels):g} "
            "or more")


def upscale_choices(sizes: Sequence[tuple[int, int]], max_pixels: int) -> list[Choice]:
    """Each factor of FACTORS for regions of these sizes (one per layer to send): enabled when the largest
    result stays within `max_pixels`."""
    width, height = max(sizes, key=lambda s: s[0] * s[1], default=(0, 0))
    return common.upscale_choices(
        width, height, max_pixels,
        too_large=lambda f, w, h: f"×{f} would make {size_text(w, h)}; the backend makes at most "
                                  f"{megapixels(max_pixels)}")


def pick_factor(choices: Sequence[Choice], wanted: int) -> int | None:
    """`wanted` if it can be used, else the nearest usable factor below it, else above; None: none can."""
    usable = [c.factor for c in choices if c.enabled]
    if wanted in usable:
        return wanted
    below = [f for f in usable if f < wanted]
    return max(below) if below else (min(usable) if usable else None)


def nothing_fits(choices: Sequence[Choice]) -> str:
    """The message when no factor can be used (the smallest one's reason says by how much)."""
    return (f"this image is too large for the backend to upscale: {choices[0].reason}. Select a smaller part "
            "of the image (the result outside the selection is GIMP's own scaling)")


def sr_models(models: Iterable[Any], factor: int) -> list[Any]:
    """The super-resolution models that upscale by `factor`."""
    return [m for m in models if m.scale == factor]


def model_choices(models: Iterable[Any], factor: int) -> list[tuple[str, str]]:
    """(model argument, label) pairs the upscale dialog offers for `factor`: the backend's default when it
    has a model for the factor, plain resampling, and each model for the factor."""
    fitting = sr_models(models, factor)
    default = [("", f"Default for ×{factor}")] if fitting else []
    return default + [("bicubic", "Bicubic (no network)")] + [(m.name, m.display_name) for m in fitting]


def model_problem(model: str | None, factor: int, models: Sequence[Any]) -> str:
    """Why the backend would refuse `model` (the procedure's argument) at `factor`; "" if not, or when the
    name is not in `models` (the backend says what it knows)."""
    model = (model or "").strip()
    if model == "bicubic":
        return ""
    if not model:
        if sr_models(models, factor):
            return ""
        scales = sorted({m.scale for m in models})
        offered = ", ".join(f"×{s}" for s in scales) or "no factor"
        return f"the backend has no model that upscales ×{factor} (its models upscale {offered}): choose " \
               "another factor, or Bicubic"
    for m in models:
        if m.name == model and m.scale != factor:
            return f"model {model!r} upscales ×{m.scale}, not ×{factor}: choose ×{m.scale}, or another model"
    return ""


def upscale_problem(sizes: Sequence[tuple[int, int]], factor: int, model: str | None, models: Sequence[Any],
                    max_pixels: int) -> str:
    """Why the backend would refuse this upscale; "" if it would not."""
    choices = upscale_choices(sizes, max_pixels)
    if not any(c.enabled for c in choices):
        return nothing_fits(choices)
    chosen = next(c for c in choices if c.factor == factor)
    if not chosen.enabled:
        usable = ", ".join(f"×{c.factor}" for c in choices if c.enabled)
        return f"{chosen.reason}: choose {usable}, or select a smaller part of the image"
    return model_problem(model, factor, models)


def style_problem(style: str | None, models: Sequence[Any]) -> str:
    """Why the backend would refuse `style`; "" if not (or when it lists no models to compare with)."""
    style = (style or "").strip()
    if not models or any(m.name == style for m in models):
        return ""
    return f"the backend has no style {style!r}; it has {', '.join(m.name for m in models)}"


# -- naming results ----------------------------------------------------------------------------------
# One rule in both editors (impasto_common.layer_name), so a result reads the same in Krita and GIMP.

def display_name(models: Iterable[Any], name: str) -> str:
    """The model's display name as the backend lists it, or its name."""
    return next((m.display_name for m in models if m.name == name and m.display_name), name)


def upscaled_file_name(file_name: str, factor: int) -> str:
    """The new image's file for an upscaled copy of `file_name`: "photo.jpg" -> "photo ×2.xcf" (GIMP
    names an image after its file; it saves as XCF)."""
    return layer_name(os.path.splitext(file_name)[0], UPSCALE, factor) + ".xcf"


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
