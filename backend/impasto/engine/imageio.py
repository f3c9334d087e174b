"""Image files <-> PixelBuffer through Pillow: PNG (8/16-bit), JPEG, TIFF (8/16-bit), WebP.

ICC profile and EXIF are carried from input to output; 16-bit sources stay 16-bit where the output
format can hold it (PNG, TIFF: Pillow has no 16-bit colour mode, so png16 and tiff16 read and write those).
Nothing is lost without a word: the size is checked in the header before anything is decoded (a small file
can claim 40000x40000 pixels), animations and multi-page files are refused rather than cut to one frame, and
transparency written to JPEG is flattened onto white with a warning."""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from impasto.engine.pixels import PixelBuffer, check_pixel_limit
from impasto.engine.png16 import png_depth, read_png16, write_png16
from impasto.engine.tiff16 import read_tiff16, write_tiff16
from impasto.errors import InvalidArgument

# Pillow's own bomb check (a warning at 89 MP, an error at 179 MP) would override --max-pixels both ways;
# read_image checks the header against our limit before decoding instead.
Image.MAX_IMAGE_PIXELS = None
SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}
NO_ALPHA = {".jpg", ".jpeg"}
DEFAULT_MAX_PIXELS = 64_000_000  # EngineConfig's default; the CLI and batch pass their --max-pixels
log = logging.getLogger(__name__)


@dataclass
class ImageMeta:
    icc_profile: bytes | None = None
    exif: bytes | None = None
    info: dict = field(default_factory=dict)


def check_pixels(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    """Refuse an image over `max_pixels` (None: no limit) with the engine's wording, from its header alone."""
    check_pixel_limit(width, height, max_pixels, f"{path}: the image")


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


def _png16_array(path: Path, info: dict) -> np.ndarray:
    arr = read_png16(path)
    key = info.get("transparency")  # tRNS of a 16-bit grey or RGB file: one colour that is transparent
    if arr.shape[2] in (1, 3) and key is not None:
        hit = np.all(arr == np.asarray(key if isinstance(key, tuple) else (key,), np.uint16), axis=2)
        arr = np.concatenate([arr, np.where(hit, 0, 65535).astype(np.uint16)[:, :, None]], axis=2)
    if arr.shape[2] <= 2:  # grey (+ alpha) -> RGB(A)
        arr = np.concatenate([np.repeat(arr[:, :, :1], 3, axis=2), arr[:, :, 1:]], axis=2)
    return arr


def read_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[PixelBuffer, ImageMeta]:
    """Pixels and metadata of an image file; over `max_pixels` it is refused from its header, before decoding."""
    path = Path(path)

    def check(width: int, height: int) -> None:
        check_pixels(path, width, height, max_pixels)

    if path.suffix.lower() in (".tif", ".tiff") and path.is_file():
        try:
            got = read_tiff16(path, check)
        except (OSError, ValueError, struct.error):
            got = None  # not one our reader takes: Pillow's turn
        if got is not None:
            return PixelBuffer.from_array(got[0]), ImageMeta(icc_profile=got[1])
    try:
        with Image.open(path) as im:  # reads the header only
            check(*im.size)
            if getattr(im, "is_animated", False) and im.format != "MPO":  # MPO: a camera JPEG with previews
                raise InvalidArgument(f"{path}: an animation or multi-page {im.format} file; Impasto works on "
                                      "one still image and would drop the other frames",
                                      hint="save the frame or page you want as a PNG and pass that")
            meta = ImageMeta(im.info.get("icc_profile"), im.info.get("exif"))
            if im.format == "PNG" and png_depth(path) == 16:
                arr = _png16_array(path, im.info)
            else:
                im.load()
                arr = _to_array(im)
                if im.format == "TIFF" and arr.dtype == np.uint8 and 16 in (getattr(im, "tag_v2", {}).get(258) or ()):
                    # a compressed (LZW, deflate) 16-bit colour TIFF: Pillow has no 16-bit colour mode
                    log.warning("%s: this 16-bit TIFF is compressed, which Impasto reads with 8 bits per "
                                "channel; save it uncompressed (or as a 16-bit PNG) to keep all 16", path)
    except FileNotFoundError:
        raise InvalidArgument(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, RuntimeError, struct.error) as exc:
        raise InvalidArgument(f"{path}: cannot read this image ({exc})",
                              hint="use PNG, JPEG, TIFF or WebP") from None
    return PixelBuffer.from_array(np.ascontiguousarray(arr)), meta


def _flatten(arr: np.ndarray, path: Path) -> np.ndarray:
    """RGB of an RGBA array composited onto white, as image editors export transparency to JPEG."""
    top = 65535.0 if arr.dtype == np.uint16 else 255.0
    alpha = arr[:, :, 3:]
    if alpha.min() >= top:
        return arr[:, :, :3]  # opaque everywhere: nothing to lose
    log.warning("%s: JPEG has no transparency; transparent areas were flattened onto white "
                "(write .png, .tif or .webp to keep them)", path)
    a = alpha.astype(np.float32) / top
    return np.rint(arr[:, :, :3] * a + top * (1.0 - a)).astype(arr.dtype)


def write_image(path: str | Path, buf: PixelBuffer, meta: ImageMeta | None = None, quality: int = 95) -> Path:
    """Write atomically (a temporary file, then a rename): an output that exists is a whole one."""
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
    if fmt.has_alpha and suffix in NO_ALPHA:
        arr = _flatten(arr, path)
    has_alpha = arr.shape[2] == 4
    icc, exif = (meta.icc_profile, meta.exif) if meta is not None else (None, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        if arr.dtype == np.uint16 and suffix in (".tif", ".tiff"):
            write_tiff16(tmp, arr, icc)
        elif arr.dtype == np.uint16 and suffix == ".png":
            write_png16(tmp, arr, icc, exif)
        else:
            if arr.dtype == np.uint16:  # JPEG, WebP and BMP hold 8 bits
                arr = np.rint(arr / 257.0).astype(np.uint8)
            im = Image.fromarray(np.ascontiguousarray(arr), "RGBA" if has_alpha else "RGB")
            kwargs: dict = {}
            if icc:
                kwargs["icc_profile"] = icc
            if exif and suffix != ".bmp":
                kwargs["exif"] = exif
            if suffix in (".jpg", ".jpeg", ".webp"):
                kwargs["quality"] = quality
            im.save(tmp, format=Image.registered_extensions()[suffix], **kwargs)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
