"""Device policy, in one place: which device runs the networks, whether reduced precision pays there, how
much memory is free, and how much of it one network call may use (bytes everywhere inside the code; the
command line takes GiB and converts once).

Imports torch only inside functions, so the CLI and the batch driver can use it without loading torch.
Used by the engine, the server and training (which does not import the engine)."""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any

from impasto.errors import InvalidArgument

if TYPE_CHECKING:
    import torch

MAX_CPU_BUDGET = 8 << 30  # bytes: above this, bigger tiles stop paying on a CPU
CPU_BUDGET_SHARE = 0.35  # of free RAM: leaves room for the input, the output and the rest of the process
CUDA_BUDGET_SHARE = 0.6  # of free device memory


def pick_device(name: str) -> torch.device:
    """`auto` (CUDA, then MPS, then CPU) or an explicit torch device name, checked to exist."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InvalidArgument(f"unknown device {name!r}", hint="use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgument("CUDA was requested but no CUDA device is available", hint="use --device cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidArgument("MPS was requested but is not available here", hint="use --device cpu")
    return dev


@functools.cache
def cpu_has_bf16() -> bool:
    """bf16 autocast only pays on CPUs with native bf16 (AVX512-BF16 or AMX); elsewhere it is emulated."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(device: torch.device, bf16: bool | None) -> torch.dtype | None:
    """The reduced precision to run networks in on `device`: None for fp32. `bf16=None` means where it pays."""
    import torch

    if bf16 is False:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and (bf16 or cpu_has_bf16()):
        return torch.bfloat16
    return None


def channels_last_pays(device: torch.device, stepped_plan: bool) -> bool:
    """Whether a network's convolutions should run channels-last on `device`: always on CUDA; on the CPU for
    networks called layer by layer as modules (the SR nets), where oneDNN's channels-last convolutions ran
    every bundled SR net 1.6-3.2x faster in eager fp32 (AVX2 EPYC, docs/benchmarks.md) and srgan-x4 from 512²
    21x (its last 9x9 convolution, 64 to 3 channels at 2048², takes a slow NCHW path). A style net's plan
    (reflection pads, instance norms, row bands: `stepped_plan`) stays NCHW on the CPU."""
    return device.type == "cuda" or (device.type == "cpu" and not stepped_plan)


def available_memory() -> int:
    """Bytes of host RAM free for new allocations (MemAvailable); 8 GiB where the system does not say."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def device_memory(device: Any) -> tuple[int, int]:
    """(total, available) bytes of the engine's device; host RAM for the CPU."""
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        free, total = torch.cuda.mem_get_info(device)
        return int(total), int(free)
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return os.sysconf("SC_PHYS_PAGES") * page, os.sysconf("SC_AVPHYS_PAGES") * page
    except (ValueError, OSError, AttributeError):  # not on every platform
        return 0, 0


def memory_budget(device: torch.device, configured: int | None = None, *, share: int = 1) -> int:
    """Bytes of working memory one network call may use: `configured` if given, else a share of what is free.

    `share` splits the default between processes that run side by side on one machine (batch workers)."""
    if configured is not None:
        return configured
    if device.type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return int(free * CUDA_BUDGET_SHARE / share)
    return min(int(available_memory() * CPU_BUDGET_SHARE / share), MAX_CPU_BUDGET)


def release_device_memory(device: Any, failed: bool) -> None:
    """After a job: hand a cancelled or failed job's CUDA cache back; successful jobs keep it warm."""
    # A cancelled or failed job can leave large blocks in torch's CUDA cache; hand them back so the next
    # job (or another program) has the memory.
    if failed and getattr(device, "type", "cpu") == "cuda":
        import torch

        torch.cuda.empty_cache()
