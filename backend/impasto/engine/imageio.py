"""Image files <-> PixelBuffer through Pillow: PNG (8/16-bit), JPEG, TIFF (8/16-bit), WebP.

ICC profile and EXIF are carried from input to output; 16-bit sources stay 16-bit where the output
format can hold it (PNG, TIFF)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from impasto.engine.pixels import PixelBuffer
from impasto.engine.tiff16 import read_tiff16, write_tiff16
from impasto.errors import InvalidArgument

Image.MAX_IMAGE_PIXELS = None  # our own --max-pixels limit applies instead, with a clear message
SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}


@dataclass
class ImageMeta:
    icc_profile: bytes | None = None
    exif: bytes | None = None
    info: dict = field(default_factory=dict)


def _to_array(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im)
        if mode == "I":
            arr = np.clip(arr, 0, 65535)
        arr = arr.astype(np.uint16)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        return np.asarray(im.convert("RGBA"))
    if mode == "F":
        arr = np.clip(np.asarray(im, dtype=np.float32), 0, 1)
        return np.repeat(arr[:, :, None], 3, axis=2)
    return np.asarray(im.convert("RGB"))


def read_image(path: str | Path) -> tuple[PixelBuffer, ImageMeta]:
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff") and path.is_file():
        try:
            got = read_tiff16(path)
        except (OSError, ValueError, struct.error, AssertionError):
            got = None
        if got is not None:
            return PixelBuffer.from_array(got[0]), ImageMeta(icc_profile=got[1])
    try:
        with Image.open(path) as im:
            im.load()
            meta = ImageMeta(im.info.get("icc_profile"), im.info.get("exif"))
            arr = _to_array(im)
    except FileNotFoundError:
        raise InvalidArgument(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidArgument(f"{path}: cannot read this image ({exc})",
                              hint="use PNG, JPEG, TIFF or WebP") from None
    return PixelBuffer.from_array(np.ascontiguousarray(arr)), meta


def write_image(path: str | Path, buf: PixelBuffer, meta: ImageMeta | None = None, quality: int = 95) -> Path:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidArgument(f"{path}: unknown output format {suffix!r}", hint="use .png, .jpg, .tif or .webp")
    arr = buf.array
    fmt = buf.format
    if fmt.order.startswith("BGR"):
        arr = arr[:, :, [2, 1, 0, 3][: fmt.channels]]
    if fmt.is_float:
        arr = np.rint(np.clip(arr.astype(np.float32), 0, 1) * 255).astype(np.uint8)
    has_alpha = fmt.has_alpha and suffix not in (".jpg", ".jpeg")
    if not has_alpha:
        arr = arr[:, :, :3]
    path.parent.mkdir(parents=True, exist_ok=True)
    if arr.dtype == np.uint16 and suffix in (".tif", ".tiff"):
        # Pillow has no 16-bit colour mode: our own baseline TIFF writer keeps all 16 bits.
        write_tiff16(path, arr, meta.icc_profile if meta else None)
        return path
    if arr.dtype == np.uint16:
        arr = np.rint(arr / 257.0).astype(np.uint8)
    im = Image.fromarray(np.ascontiguousarray(arr), "RGBA" if has_alpha else "RGB")
    kwargs: dict = {}
    if meta is not None:
        if meta.icc_profile:
            kwargs["icc_profile"] = meta.icc_profile
        if meta.exif and suffix in (".jpg", ".jpeg", ".webp", ".png", ".tif", ".tiff"):
            kwargs["exif"] = meta.exif
    if suffix in (".jpg", ".jpeg", ".webp"):
        kwargs["quality"] = quality
    tmp = path.with_name(f".{path.name}.partial")
    try:
        im.save(tmp, format=Image.registered_extensions()[suffix], **kwargs)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
