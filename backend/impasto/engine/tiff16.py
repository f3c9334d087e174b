"""16-bit RGB(A) TIFF, which Pillow cannot hold (it has no 16-bit colour mode): a small baseline
writer (uncompressed, chunky) and a reader for chunky 16-bit files, uncompressed or deflate-compressed (with
or without the horizontal predictor, as GIMP and Photoshop write them). LZW and other TIFFs go
through Pillow. The reader reads only the header and the tags it needs, of any byte order and any tag
types around them, then the strips, after the caller has accepted the size."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

_SHORT, _LONG, _UNDEFINED = 3, 4, 7


def write_tiff16(path: Path, arr: np.ndarray, icc_profile: bytes | None = None) -> None:
    """arr: (H, W, 3|4) uint16, RGB(A) with unassociated alpha."""
    h, w, c = arr.shape
    data = np.ascontiguousarray(arr, dtype="<u2").tobytes()
    extra: list[bytes] = []
    offset = 8  # after the header

    def blob(b: bytes) -> int:
        nonlocal offset
        pos = offset
        extra.append(b + (b"\0" if len(b) % 2 else b""))
        offset += len(extra[-1])
        return pos

    pixels_at = blob(data)
    bits_at = blob(struct.pack(f"<{c}H", *([16] * c)))
    entries = [
        (256, _LONG, 1, w), (257, _LONG, 1, h), (258, _SHORT, c, bits_at), (259, _SHORT, 1, 1),
        (262, _SHORT, 1, 2), (273, _LONG, 1, pixels_at), (277, _SHORT, 1, c), (278, _LONG, 1, h),
        (279, _LONG, 1, len(data)), (284, _SHORT, 1, 1),
    ]
    if c == 4:
        entries.append((338, _SHORT, 1, 2))
    if icc_profile:
        entries.append((34675, _UNDEFINED, len(icc_profile), blob(icc_profile)))
    entries.sort()
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        if typ == _SHORT and count == 1:
            ifd += struct.pack("<HHIHH", tag, typ, count, value, 0)
        else:
            ifd += struct.pack("<HHII", tag, typ, count, value)
    ifd += struct.pack("<I", 0)
    with open(path, "wb") as f:
        f.write(b"II*\0" + struct.pack("<I", offset))
        for b in extra:
            f.write(b)
        f.write(ifd)


# Bytes per value of each TIFF 6.0 field type (and BigTIFF's 8-byte ones). A tag of a type not listed here is
# skipped: we only need a dozen integer tags, and a reader must not trip over the rest (DPI is RATIONAL).
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}
_INTEGER_TYPES = {1: "B", 3: "H", 4: "I", 16: "Q"}
_WIDTH, _HEIGHT, _BITS, _COMPRESSION, _PHOTOMETRIC = 256, 257, 258, 259, 262
_STRIP_OFFSETS, _SAMPLES, _STRIP_COUNTS, _PLANAR, _EXTRA, _SAMPLE_FORMAT, _ICC = 273, 277, 279, 284, 338, 339, 34675
_PREDICTOR = 317
_WANTED = {_WIDTH, _HEIGHT, _BITS, _COMPRESSION, _PHOTOMETRIC, _STRIP_OFFSETS, _SAMPLES, _STRIP_COUNTS, _PLANAR,
           _EXTRA, _SAMPLE_FORMAT, _ICC, _PREDICTOR}
_NONE, _DEFLATE = (1,), (8, 32946)  # compression codes we decode: none; zlib (Adobe's and the old one)
_MAX_TABLE, _MAX_ICC = 8 << 20, 16 << 20  # bytes per tag we accept; more is a broken or hostile file


def _read_tags(f: BinaryIO, size: int) -> tuple[str, dict[int, list[int] | bytes]] | None:
    """The tags we use from the first IFD of a classic TIFF; None for anything we do not read ourselves."""
    head = f.read(8)
    if len(head) < 8 or head[:4] not in (b"II*\0", b"MM\0*"):
        return None  # not a TIFF, or a BigTIFF (Pillow reads those)
    e = "<" if head[:2] == b"II" else ">"
    (ifd_at,) = struct.unpack(e + "I", head[4:8])
    f.seek(ifd_at)
    raw_n = f.read(2)
    if len(raw_n) < 2:
        return None
    (n,) = struct.unpack(e + "H", raw_n)
    entries = f.read(12 * n + 4)
    if len(entries) < 12 * n + 4 or entries[-4:] != b"\0\0\0\0":
        return None  # truncated, or several pages (Pillow's path refuses those rather than drop pages)
    tags: dict[int, list[int] | bytes] = {}
    for i in range(n):
        tag, typ, count = struct.unpack(e + "HHI", entries[12 * i : 12 * i + 8])
        if tag not in _WANTED or typ not in _TYPE_SIZES:
            continue  # RATIONAL DPI, ASCII software names, vendor tags of unknown types: not ours to read
        nbytes = _TYPE_SIZES[typ] * count
        if nbytes > (_MAX_ICC if tag == _ICC else _MAX_TABLE):
            return None
        field = entries[12 * i + 8 : 12 * i + 12]
        if nbytes > 4:
            (at,) = struct.unpack(e + "I", field)
            if at + nbytes > size:
                return None
            f.seek(at)
            field = f.read(nbytes)
        else:
            field = field[:nbytes]
        if tag == _ICC:
            if typ in (1, 7):
                tags[tag] = field
        elif typ in _INTEGER_TYPES:
            tags[tag] = list(struct.unpack(f"{e}{count}{_INTEGER_TYPES[typ]}", field))
    return e, tags


def read_tiff16(path: Path, check_size: Callable[[int, int], None] | None = None
                ) -> tuple[np.ndarray, bytes | None] | None:
    """(H, W, C) uint16 and the ICC profile, for uncompressed chunky 16-bit unsigned RGB(A); None otherwise.

    `check_size(width, height)` runs on the header, before any pixel is read: it raises to refuse the image."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        got = _read_tags(f, size)
        if got is None:
            return None
        e, tags = got

        def one(tag: int, default: int = 0) -> int:
            v = tags.get(tag)
            return int(v[0]) if isinstance(v, list) and v else default

        bits, c = tags.get(_BITS, [1]), one(_SAMPLES, 1)
        compression, predictor = one(_COMPRESSION, 1), one(_PREDICTOR, 1)
        if compression not in _NONE + _DEFLATE or predictor not in (1, 2):
            return None
        if one(_PLANAR, 1) != 1 or c not in (3, 4) or one(_PHOTOMETRIC) != 2:
            return None
        if not isinstance(bits, list) or any(b != 16 for b in bits) or one(_SAMPLE_FORMAT, 1) != 1:
            return None
        w, h = one(_WIDTH), one(_HEIGHT)
        if w < 1 or h < 1:
            return None
        if check_size is not None:
            check_size(w, h)
        offsets, counts = tags.get(_STRIP_OFFSETS, []), tags.get(_STRIP_COUNTS, [])
        if not isinstance(offsets, list) or not isinstance(counts, list) or len(offsets) != len(counts):
            return None
        need = w * h * c * 2
        data = bytearray()
        for at, k in zip(offsets, counts, strict=True):
            if len(data) >= need:
                break
            if at + k > size:
                return None
            f.seek(at)
            if compression in _DEFLATE:
                # max_length: a strip that inflates past the image's size is a bomb, not more pixels
                data += zlib.decompressobj().decompress(f.read(k), need - len(data))
            else:
                data += f.read(min(k, need - len(data)))
    if len(data) < need:
        return None
    if predictor == 2:  # horizontal differencing: each sample is stored as the difference from its left neighbour
        rows = np.frombuffer(bytes(data[:need]), dtype=e + "u2").reshape(h, w, c)
        data = bytearray(np.cumsum(rows, axis=1, dtype=np.uint16).astype(e + "u2").tobytes())
    return _finish(data, e, w, h, c, tags)


def _finish(data: bytearray, e: str, w: int, h: int, c: int,
            tags: dict[int, list[int] | bytes]) -> tuple[np.ndarray, bytes | None]:
    arr = np.frombuffer(bytes(data[: w * h * c * 2]), dtype=e + "u2").reshape(h, w, c).astype(np.uint16)
    extra = tags.get(_EXTRA)
    if c == 4 and isinstance(extra, list) and extra[:1] == [1]:
        # Associated (premultiplied) alpha; PixelBuffers hold unassociated alpha like everything else here.
        a = arr[:, :, 3:].astype(np.float32)
        rgb = np.where(a > 0, arr[:, :, :3] * (65535.0 / np.maximum(a, 1)), 0)
        arr = np.concatenate([np.clip(np.rint(rgb), 0, 65535).astype(np.uint16), arr[:, :, 3:]], axis=2)
    icc = tags.get(_ICC)
    return arr, icc if isinstance(icc, bytes) else None
