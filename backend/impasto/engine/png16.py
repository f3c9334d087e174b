"""16-bit PNG, which Pillow reads and writes only as 8-bit colour (it has no 16-bit RGB mode): a small
writer (Sub filter, zlib, iCCP and eXIf chunks) and a reader that keeps the low bytes Pillow drops."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_BAND_ROWS = 256  # rows filtered and compressed at a time: memory stays a band, not a second copy of the image


def png_depth(path: Path) -> int | None:
    """The bit depth in a PNG's IHDR chunk (1, 2, 4, 8 or 16); None when `path` is not a PNG."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or not head.startswith(_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return head[24]


def read_png16(path: Path) -> np.ndarray:
    """(H, W, C) uint16 with C = 1 (grey), 2 (grey + alpha), 3 or 4, every bit kept. The caller has checked the
    size in the header first: this decodes the whole image.

    Pillow's PNG decoder does the inflating and unfiltering (in C); only its unpacker drops the low bytes of
    16-bit colour. So the same stream is unpacked twice, once taking each pixel's high bytes and once its low
    bytes ("RGB;16L" reads the big-endian samples the other way round), and the halves are put together."""
    with Image.open(path) as im:
        (tile,) = im.tile
        if im.mode == "I;16":  # grey: Pillow keeps 16 bits itself
            im.load()
            return np.asarray(im).astype(np.uint16)[:, :, None]
        raw = tile.args if isinstance(tile.args, str) else None
        if raw == "LA;16B":  # 4 bytes a pixel: take them as 8-bit RGBA, then pair them up
            im.tile = [tile._replace(args="RGBA")]
            im.load()
            return np.asarray(im).view(">u2").astype(np.uint16)
        if raw not in ("RGB;16B", "RGBA;16B"):
            raise ValueError(f"unexpected 16-bit PNG layout {tile.args!r}")
        im.load()
        high = np.asarray(im)
    with Image.open(path) as im:
        (tile,) = im.tile
        im.tile = [tile._replace(args=raw[:-1] + "L")]
        im.load()
        low = np.asarray(im)
    return (high.astype(np.uint16) << 8) | low


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png16(path: Path, arr: np.ndarray, icc_profile: bytes | None = None, exif: bytes | None = None) -> None:
    """arr: (H, W, 3|4) uint16, RGB(A) with unassociated alpha."""
    h, w, c = arr.shape
    bpp = 2 * c
    with open(path, "wb") as f:
        f.write(_SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 6 if c == 4 else 2, 0, 0, 0)))
        if icc_profile:
            f.write(_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(icc_profile)))
        if exif:
            f.write(_chunk(b"eXIf", exif.removeprefix(b"Exif\0\0")))  # PNG holds the TIFF block without the JPEG tag
        z = zlib.compressobj(6)
        for top in range(0, h, _BAND_ROWS):
            rows = np.ascontiguousarray(arr[top : top + _BAND_ROWS], dtype=">u2").view(np.uint8).reshape(-1, w * bpp)
            # Sub filter (type 1): each byte minus the same byte of the pixel to its left, modulo 256.
            filtered = np.empty((rows.shape[0], 1 + w * bpp), np.uint8)
            filtered[:, 0] = 1
            filtered[:, 1 : 1 + bpp] = rows[:, :bpp]
            np.subtract(rows[:, bpp:], rows[:, :-bpp], out=filtered[:, 1 + bpp :])
            block = z.compress(filtered.tobytes())
            if block:
                f.write(_chunk(b"IDAT", block))
        f.write(_chunk(b"IDAT", z.flush()) + _chunk(b"IEND", b""))
