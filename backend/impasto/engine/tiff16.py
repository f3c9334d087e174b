"""16-bit RGB(A) TIFF, which Pillow cannot hold (it has no 16-bit colour mode): a small baseline
writer (uncompressed, chunky) and a reader for uncompressed chunky 16-bit files. Other TIFFs go
through Pillow."""

from __future__ import annotations

import struct
from pathlib import Path

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


def read_tiff16(path: Path) -> tuple[np.ndarray, bytes | None] | None:
    """(H, W, C) uint16 and the ICC profile, for uncompressed chunky 16-bit RGB(A); None otherwise."""
    raw = Path(path).read_bytes()
    if raw[:4] not in (b"II*\0", b"MM\0*"):
        return None
    e = "<" if raw[:2] == b"II" else ">"
    (ifd_at,) = struct.unpack(e + "I", raw[4:8])
    (n,) = struct.unpack(e + "H", raw[ifd_at : ifd_at + 2])
    tags: dict[int, list[int] | bytes] = {}
    sizes = {1: 1, 2: 1, 3: 2, 4: 4, 7: 1}
    for i in range(n):
        tag, typ, count = struct.unpack(e + "HHI", raw[ifd_at + 2 + 12 * i : ifd_at + 10 + 12 * i])
        field = raw[ifd_at + 10 + 12 * i : ifd_at + 14 + 12 * i]
        size = sizes.get(typ, 1) * count
        if size > 4:
            (at,) = struct.unpack(e + "I", field)
            field = raw[at : at + size]
        if typ in (1, 2, 7):
            tags[tag] = field[:size]
        else:
            fmt = {3: "H", 4: "I"}[typ]
            tags[tag] = list(struct.unpack(e + fmt * count, field[:size]))
    def one(tag: int, default: int = 0) -> int:
        v = tags.get(tag)
        return int(v[0]) if isinstance(v, list) and v else default

    bits = tags.get(258, [1])
    c = one(277, 1)
    if one(259, 1) != 1 or one(284, 1) != 1 or c not in (3, 4) or one(262) != 2:
        return None
    if not isinstance(bits, list) or any(b != 16 for b in bits):
        return None
    w, h = one(256), one(257)
    offsets, counts = tags.get(273, []), tags.get(279, [])
    assert isinstance(offsets, list) and isinstance(counts, list)
    data = b"".join(raw[o : o + k] for o, k in zip(offsets, counts, strict=False))
    if len(data) < w * h * c * 2:
        return None
    arr = np.frombuffer(data[: w * h * c * 2], dtype=e + "u2").reshape(h, w, c).astype(np.uint16)
    icc = tags.get(34675)
    return arr, icc if isinstance(icc, bytes) else None
