"""Layer outputs of the exact tiled path kept in a temporary file instead of memory (issue 13: an 8192x8192
stylize within 3 GB; one full-resolution 32-channel layer there is 8.6 GB of float32).

A `Spilled` tensor is (1, C, H, W) float32 in an unlinked temporary file, channels last (row r, column c at byte
4 C (r W + c)), so that a window of rows and columns is one contiguous run per row. It is read and written with
explicit pread/pwrite of those runs: only the window being read or written is in the process's memory. (A memory
map would count its resident pages towards the RSS, and the kernel decides when they go.) Values are stored as
they are: float32, exact."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import numpy as np
import torch

from impasto.engine.pixels import PixelBuffer, decode_rgb

_MAX_IO = 1 << 30  # bytes per system call (Linux moves at most ~2 GiB per read/write)


def _pread(fd: int, view: memoryview, offset: int) -> None:
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done : done + _MAX_IO]], offset + done)
        if n <= 0:
            raise OSError(f"short read from the spill file at {offset + done}")
        done += n


def _pwrite(fd: int, view: memoryview, offset: int) -> None:
    done = 0
    while done < len(view):
        done += os.pwritev(fd, [view[done : done + _MAX_IO]], offset + done)


class Spilled:
    """A (1, C, H, W) float32 tensor in a temporary file (see the module docstring)."""

    def __init__(self, channels: int, h: int, w: int, folder: str | None = None):
        self.shape = torch.Size((1, channels, h, w))
        self._file = tempfile.TemporaryFile(prefix="impasto-tile-", dir=folder)
        self._fd = self._file.fileno()
        os.ftruncate(self._fd, channels * h * w * 4)

    def close(self) -> None:
        self._file.close()

    def _offset(self, r: int, c: int) -> int:
        return 4 * self.shape[1] * (r * self.shape[3] + c)

    def read(self, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        """Rows [r0, r1), columns [c0, c1) as a (1, C, rows, columns) tensor (channels-last memory)."""
        ch, w = self.shape[1], self.shape[3]
        buf = np.empty((r1 - r0, c1 - c0, ch), np.float32)
        if c0 == 0 and c1 == w:  # whole rows: one run
            _pread(self._fd, buf.data.cast("B"), self._offset(r0, 0))
        else:
            for i in range(r1 - r0):
                _pread(self._fd, buf[i].data.cast("B"), self._offset(r0 + i, c0))
        return torch.from_numpy(buf).permute(2, 0, 1)[None]

    def write(self, r0: int, c0: int, t: torch.Tensor) -> None:
        """Store the (1, C, rows, columns) tensor `t` at row r0, column c0."""
        arr = np.ascontiguousarray(t[0].detach().to("cpu", torch.float32).permute(1, 2, 0).numpy())
        if c0 == 0 and arr.shape[1] == self.shape[3]:
            _pwrite(self._fd, arr.data.cast("B"), self._offset(r0, 0))
        else:
            for i in range(arr.shape[0]):
                _pwrite(self._fd, arr[i].data.cast("B"), self._offset(r0 + i, c0))


class Source:
    """A network's input read straight from the editor's buffer, each window decoded when it is read
    (`pixels.decode_rgb`, the values `to_network` gives): (1, 3, H + 2 margin + extra_h, W + 2 margin + extra_w)
    float32 sRGB 0-255, padded as the engine pads a tensor: by reflection, first `margin` on every side (the
    engine's edge margin), then `extra` on the right and bottom (`tiling._pad_to_multiple`). At 8192x8192 the
    float32 tensor it stands for is 805 MB (issue 13: an 8192x8192 stylize within 3 GB). Read-only."""

    def __init__(self, buf: PixelBuffer, margin: int, extra_h: int, extra_w: int):
        h, w = buf.height, buf.width
        if margin >= min(h, w) or extra_h >= h + 2 * margin or extra_w >= w + 2 * margin:
            raise ValueError(f"reflection pads of {margin} and {extra_h}x{extra_w} need a larger image than {w}x{h}")
        self.buf, self.margin = buf, margin
        self.shape = torch.Size((1, 3, h + 2 * margin + extra_h, w + 2 * margin + extra_w))

    def _index(self, i0: int, i1: int, n: int) -> tuple[int, int, np.ndarray | None]:
        """The buffer's range holding [i0, i1) and, where the window reaches a pad, the reflected indices."""
        m = self.margin
        if i0 >= m and i1 <= n + m:
            return i0 - m, i1 - m, None
        idx = np.arange(i0, i1)
        padded = n + 2 * m
        idx = np.where(idx >= padded, 2 * (padded - 1) - idx, idx) - m  # the outer pad, then the margin
        idx = np.abs(idx)
        idx = np.where(idx >= n, 2 * (n - 1) - idx, idx)
        lo, hi = int(idx.min()), int(idx.max()) + 1
        return lo, hi, idx - lo

    def read(self, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        a0, a1, rows = self._index(r0, r1, self.buf.height)
        b0, b1, cols = self._index(c0, c1, self.buf.width)
        val = decode_rgb(self.buf.array[a0:a1, b0:b1], self.buf.format)
        if rows is not None:
            val = val[rows]
        if cols is not None:
            val = val[:, cols]
        return torch.from_numpy(np.ascontiguousarray(val)).permute(2, 0, 1)[None]


Stored = torch.Tensor | Spilled | Source


def read(x: Stored, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
    return x[..., r0:r1, c0:c1] if isinstance(x, torch.Tensor) else x.read(r0, r1, c0, c1)


def write(x: Stored, r0: int, c0: int, t: torch.Tensor) -> None:
    if isinstance(x, Source):
        raise TypeError("a Source is read-only")
    if isinstance(x, Spilled):
        x.write(r0, c0, t)
    else:
        x[..., r0 : r0 + t.shape[2], c0 : c0 + t.shape[3]] = t


def bands(x: Stored, rows: int) -> Iterator[tuple[int, int]]:
    for r0 in range(0, x.shape[2], rows):
        yield r0, min(r0 + rows, x.shape[2])


def to_tensor(x: Stored) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    return x.read(0, x.shape[2], 0, x.shape[3]).contiguous()
