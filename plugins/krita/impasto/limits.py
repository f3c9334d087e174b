"""What the backend will accept, in the docker's words: its pixel limit (server_info's max_pixels) against
the layer at a brush size, and the upscaling factors its models offer. The arithmetic is impasto_common's,
shared with GIMP; here are Krita's sentences, which say what to do in the editor."""

from __future__ import annotations

from collections.abc import Iterable

from impasto_common import Choice, megapixels, size_text, smallest_brush, stylize_oversize
from impasto_common import upscale_choices as _choices

__all__ = ["Choice", "stylize_problem", "upscale_choices"]


def stylize_problem(width: int, height: int, scale: float, max_pixels: int) -> str:
    """Why the backend would refuse to stylize a width x height layer at `scale`; "" when it would not
    (or when its limit is unknown: 0)."""
    over = stylize_oversize(width, height, scale, max_pixels)
    if over is None:
        return ""
    if not over.processing:
        return (f"This layer is {size_text(width, height)}; the backend takes at most {megapixels(max_pixels)}. "
                "Select a part of it to stylize.")
    smallest = round(100 * smallest_brush(width, height, max_pixels))
    return (f"At this brush size the layer would be painted at {size_text(over.width, over.height)}, over the "
            f"backend's {megapixels(max_pixels)}: use a brush size of {smallest}% or more.")


def upscale_choices(width: int, height: int, max_pixels: int, model_scales: Iterable[int] | None) -> list[Choice]:
    """Each factor for a width x height image: it needs a model for that factor (when the models are known:
    `model_scales` not None) and a result within `max_pixels` (when known: not 0)."""
    return _choices(
        width, height, max_pixels, model_scales=model_scales,
        no_model=lambda f: f"The backend has no model that upscales ×{f}.",
        too_large=lambda f, w, h: (f"×{f} would make {size_text(w, h)}; the backend makes at most "
                                   f"{megapixels(max_pixels)}. Select a smaller part of the image."))
