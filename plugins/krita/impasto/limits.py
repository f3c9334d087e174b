"""What the backend will accept, worked out before anything is sent: its pixel limit (server_info's
max_pixels) against the layer, the processing size a brush size gives, and the upscaling factors its
models offer. Pure Python; the messages are for artists, so they say what to do in the editor."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from impasto_common import FACTORS, SCALE

# The brush size is the inverse of the processing scale: the network paints strokes of a fixed size in
# the pixels it processes, so processing at half size (scale 0.5) makes the strokes twice as big on the
# layer. Its range is SCALE's, inverted: 1/4 to 4.
BRUSH_LOW, BRUSH_HIGH = 1.0 / SCALE.high, 1.0 / SCALE.low


def brush_to_scale(brush: float) -> float:
    return SCALE.clamp(1.0 / max(brush, 1e-6))


def scale_to_brush(scale: float) -> float:
    return 1.0 / SCALE.clamp(scale)


def megapixels(pixels: int) -> str:
    mp = pixels / 1e6
    return f"{mp:.0f} MP" if mp >= 10 else f"{mp:.1f} MP"


def processing_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The size the backend resizes to before stylizing, rounded as it rounds."""
    return max(1, round(width * scale)), max(1, round(height * scale))


def stylize_problem(width: int, height: int, scale: float, max_pixels: int) -> str:
    """Why the backend would refuse to stylize a width x height layer at `scale`; "" when it would not
    (or when its limit is unknown: 0)."""
    if not max_pixels:
        return ""
    if width * height > max_pixels:
        return (f"This layer is {width}×{height} ({megapixels(width * height)}); the backend takes at most "
                f"{megapixels(max_pixels)}. Select a part of it to stylize.")
    pw, ph = processing_size(width, height, scale)
    if pw * ph > max_pixels:
        smallest = math.ceil(100 * math.sqrt(width * height / max_pixels))
        return (f"At this brush size the layer would be painted at {pw}×{ph} ({megapixels(pw * ph)}), over "
                f"the backend's {megapixels(max_pixels)}: use a brush size of {smallest}% or more.")
    return ""


@dataclass(frozen=True)
class Choice:
    """One upscaling factor and whether it can be used now; `reason` says why not."""

    factor: int
    enabled: bool
    reason: str = ""


def upscale_choices(width: int, height: int, max_pixels: int, model_scales: Iterable[int] | None) -> list[Choice]:
    """Each factor of FACTORS for a width x height image: it needs a model for that factor (when the
    models are known: `model_scales` not None) and a result within `max_pixels` (when known: not 0)."""
    scales = None if model_scales is None else set(model_scales)
    choices = []
    for f in FACTORS:
        w, h = width * f, height * f
        if scales is not None and f not in scales:
            choices.append(Choice(f, False, f"The backend has no model that upscales ×{f}."))
        elif max_pixels and w * h > max_pixels:
            choices.append(Choice(f, False, f"×{f} would make {w}×{h} ({megapixels(w * h)}); the backend "
                                            f"makes at most {megapixels(max_pixels)}. Select a smaller part "
                                            "of the image."))
        else:
            choices.append(Choice(f, True))
    return choices
