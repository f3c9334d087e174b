"""Peak resident memory of a block of code, for tests that a hostile input cannot make us allocate much.

Linux resets the process's high-water mark (VmHWM) when "5" is written to /proc/self/clear_refs, so the peak of
just the block is measurable in-process, including what torch allocates outside Python's allocator (which
tracemalloc cannot see). Elsewhere `mb` stays None and the memory part of a test is not checked."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


def _kib(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"no {field} in {_STATUS}")


class PeakRSS:
    """`with PeakRSS() as peak: ...` then `peak.mb`: the highest resident memory above the start, in MiB."""

    def __init__(self) -> None:
        self.mb: float | None = None
        self._start: int | None = None

    def __enter__(self) -> PeakRSS:
        try:
            _CLEAR.write_text("5")
            self._start = _kib("VmRSS")
        except OSError:
            self._start = None
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if self._start is not None:
            self.mb = (_kib("VmHWM") - self._start) / 1024

    def below(self, limit_mb: float) -> bool:
        return self.mb is None or self.mb < limit_mb
