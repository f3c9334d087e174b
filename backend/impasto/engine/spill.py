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


Stored = torch.Tensor | Spilled


def read(x: Stored, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
    return x.read(r0, r1, c0, c1) if isinstance(x, Spilled) else x[..., r0:r1, c0:c1]


def write(x: Stored, r0: int, c0: int, t: torch.Tensor) -> None:
    if isinstance(x, Spilled):
        x.write(r0, c0, t)
    else:
        x[..., r0 : r0 + t.shape[2], c0 : c0 + t.shape[3]] = t


def bands(x: Stored, rows: int) -> Iterator[tuple[int, int]]:
    for r0 in range(0, x.shape[2], rows):
        yield r0, min(r0 + rows, x.shape[2])


def to_tensor(x: Stored) -> torch.Tensor:
    if isinstance(x, Spilled):
        return x.read(0, x.shape[2], 0, x.shape[3]).contiguous()
    return x
