"""Krita colour spaces <-> wire pixel formats, rectangles and selections: pure Python, no Krita, no numpy.

Krita hands out integer depths as BGRA and float depths as RGBA; float layers normally carry a linear
(g10) profile. We send pixels in their own layout so the backend, not the editor, does the conversion,
and the result comes back in the same layout to be written straight into a new layer."""

from __future__ import annotations

from array import array
from dataclasses import dataclass

from impasto_common import Rect, format_name, parse_format

_ORDER_FOR_DEPTH = {"U8": "BGRA", "U16": "BGRA", "F16": "RGBA", "F32": "RGBA"}
_MODEL_NAMES = {"CMYKA": "CMYK", "LABA": "Lab", "GRAYA": "Grayscale", "XYZA": "XYZ", "YCbCrA": "YCbCr"}


class UnsupportedDocument(Exception):
    """The document or layer cannot be processed; the message is shown to the user as is."""


def profile_is_linear(profile: str, depth: str) -> bool:
    """Guess whether a profile name means linear light. Krita's float default is sRGB-elle-V2-g10.icc and
    its integer default sRGB-elle-V2-srgbtrc.icc; unknown float profiles are taken as linear (the common
    case for scene-referred work), unknown integer ones as sRGB-encoded."""
    name = profile.lower()
    if any(mark in name for mark in ("g10", "linear", "scrgb", "gamma 1.0", "-g1.0")):
        return True
    if any(mark in name for mark in ("srgbtrc", "srgb built-in", "g22", "g18", "rec709", "trc", "gamma")):
        return False
    return depth.startswith("F")


def wire_format(color_model: str, depth: str, profile: str = "") -> str:
    """The wire pixel format for a Krita layer, e.g. ("RGBA", "U16", ...) -> "BGRA_U16".

    Raises UnsupportedDocument for colour models the backend cannot stylize."""
    if color_model != "RGBA":
        model = _MODEL_NAMES.get(color_model, color_model)
        raise UnsupportedDocument(
            f"Impasto works on RGB images, but this layer is {model}. "
            "Convert it with Image ▸ Convert Image Color Space… (RGB/Alpha) and try again."
        )
    if depth not in _ORDER_FOR_DEPTH:
        raise UnsupportedDocument(f"Impasto cannot read {depth} layers; use 8-bit, 16-bit or float RGB.")
    return format_name(_ORDER_FOR_DEPTH[depth], depth, profile_is_linear(profile, depth))


def all_selected(mask: bytes) -> bool:
    return mask.count(255) == len(mask)


def apply_selection(data: bytes, mask: bytes, pixel_format: str) -> bytes:
    """Multiply each pixel's alpha by the selection's value (0-255, one byte a pixel), so the new layer
    only shows through the selection and keeps its own alpha inside it. Colour channels stay as the
    backend returned them; a fully selected pixel is untouched, bit for bit."""
    if all_selected(mask):
        return data
    depth = parse_format(pixel_format)[1]
    typecode = {"U8": "B", "U16": "H", "F16": "", "F32": "f"}[depth]
    if depth == "F16":
        return _apply_selection_f16(data, mask)
    pixels = array(typecode, data)
    alpha = pixels[3::4]
    for i, m in enumerate(mask):
        if m == 255:
            continue
        if typecode == "f":
            alpha[i] = alpha[i] * (m / 255.0)
        else:
            alpha[i] = (alpha[i] * m + 127) // 255
    pixels[3::4] = alpha
    return pixels.tobytes()


def _apply_selection_f16(data: bytes, mask: bytes) -> bytes:
    import struct  # half floats: struct's "e" format, since array has no f16 typecode

    out = bytearray(data)
    for i, m in enumerate(mask):
        if m == 255:
            continue
        at = i * 8 + 6
        (a,) = struct.unpack_from("<e", out, at)
        struct.pack_into("<e", out, at, a * (m / 255.0))
    return bytes(out)


@dataclass(frozen=True)
class LayerSnapshot:
    """Pixels read from a layer on the GUI thread, with what is needed to put the result back."""

    doc: object
    node: object
    rect: Rect
    pixel_format: str
    data: bytes
    selection: bytes | None  # one byte a pixel over `rect`, or None without a selection
    above: object = None  # the layer the result goes above; None: `node` itself
    result_of: str = ""  # when `node` is the source of the active result layer: that layer's name
    source_name: str = ""  # and then `node`'s name


@dataclass(frozen=True)
class PreviewSnapshot:
    """A reduced copy of a layer (8-bit BGRA) for the live preview, `shrink` times the image's size;
    `key` changes when the layer does."""

    data: bytes
    width: int
    height: int
    shrink: float
    key: object


@dataclass(frozen=True)
class ImageSnapshot:
    """The visible image (or its selected part) for upscaling into a new document."""

    doc: object
    rect: Rect
    pixel_format: str
    data: bytes
    color_model: str
    depth: str
    profile: str
    resolution: float
    name: str
