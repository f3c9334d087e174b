"""Bounds on what a weight file may ask us to build, checked before anything is allocated.

A model file names its architecture's size through key names and tensor shapes. Without bounds a 500-byte
file naming `block3000` built 3,000 residual blocks (1.5 GB), and a `.pth` whose tensors are stride-0 views
of one number claimed gigabytes once converted. The caps are generous (about ten times the largest network
we know of) but finite; the real guarantee is that the weights must match the built network's shapes, which
`registry` checks on a skeleton that holds no memory, so a file can only cost about what it holds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from impasto.errors import ModelFileError

MAX_TENSORS = 4096  # tensors in one state dict (a 5-block Johnson net has 62, SRGAN x8 82)
MAX_TENSOR_ELEMENTS = 1 << 26  # one tensor (256 MiB as float32); the largest real one has 147,456
MAX_TOTAL_ELEMENTS = 1 << 28  # all tensors together (1 GiB as float32); real nets have 0.5-1.7 million
MAX_DIMS = 4  # convolution kernels are 4-D; nothing here has more
MAX_CHANNELS = 1024  # feature width of any layer (Johnson 32/64/128, SR nets 32-64)
MAX_BLOCKS = 64  # residual blocks (Johnson 5, Johnson-SR 4, SRGAN 5)
MAX_UPSAMPLE_STAGES = 3  # x2 stages of an SR net: x2, x4, x8
MAX_KEY_CHARS = 200  # a state-dict key (real ones are under 40)
MAX_ECHO = 60  # characters of a key or name quoted back in an error message

# Integer counters that BatchNorm saves next to its weights; they never change an inference result.
COUNTER_SUFFIX = "num_batches_tracked"


def short(text: object, limit: int = MAX_ECHO) -> str:
    """`text` for a one-line error message: shortened (file contents are never quoted back at any length),
    with line breaks and other control characters escaped."""
    s = str(text)
    s = s if len(s) <= limit else s[:limit] + "..."
    return s if s.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def echo(value: object) -> str:
    """`value` as Python would show it (strings quoted), shortened like `short`."""
    return short(repr(value))


def bounded(value: Any, low: int, high: int, what: str) -> int:
    """`value` as an int in [low, high], or a ModelFileError that names `what`."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ModelFileError(f"{what} is {echo(value)}, outside {low}..{high}",
                             hint="the file is damaged or not a network this version can run")
    return value


def check_shape(shape: Any, what: str) -> tuple[int, ...]:
    """A tensor shape from a file header: a short list of non-negative ints with a bounded product."""
    if not isinstance(shape, list | tuple) or len(shape) > MAX_DIMS:
        raise ModelFileError(f"{what}: shape {echo(shape)} is not a list of at most {MAX_DIMS} sizes")
    dims = tuple(bounded(d, 0, MAX_TENSOR_ELEMENTS, f"{what}: a size in shape {echo(shape)}") for d in shape)
    n = 1
    for d in dims:
        n *= d  # Python ints: no overflow, unlike np.prod
    bounded(n, 0, MAX_TENSOR_ELEMENTS, f"{what}: the element count of shape {list(dims)}")
    return dims


def _check_tensor(key: str, t: Any) -> None:
    if not isinstance(t, torch.Tensor):
        raise ModelFileError(f"{echo(key)} is a {type(t).__name__}, not a tensor")
    if t.layout != torch.strided or t.is_meta or t.is_quantized:
        raise ModelFileError(f"{echo(key)}: only plain dense tensors are accepted, not {t.layout}")
    if not t.is_floating_point():
        raise ModelFileError(f"{echo(key)} holds {t.dtype} values; network weights are floating point",
                             hint="export the weights as float32 or float16")
    check_shape(list(t.shape), echo(key))
    # A view may not reach past its storage or claim more elements than the storage holds: a stride-0
    # (expanded) tensor from a crafted pickle would otherwise become gigabytes when converted to float32.
    # Checked on the sizes alone, before anything is materialised.
    need = t.numel() * t.element_size()
    have = t.untyped_storage().nbytes()
    extent = t.storage_offset() + sum((n - 1) * s for n, s in zip(t.shape, t.stride(), strict=True)) + 1
    if t.numel() and (need > have or min(t.stride(), default=1) < 0 or extent * t.element_size() > have):
        raise ModelFileError(f"{echo(key)}: a {list(t.shape)} view of {have} bytes (overlapping or expanded)",
                             hint="save the weights with plain contiguous tensors")


def check_state(state: Any, what: str) -> dict[str, torch.Tensor]:
    """The tensors of a state dict, checked: string keys, a bounded count, dense floating-point tensors of
    bounded size. BatchNorm's integer counters are dropped (the layers recreate them)."""
    if not isinstance(state, Mapping):
        raise ModelFileError(f"{what}: expected a state dict of tensors, got {type(state).__name__}")
    bounded(len(state), 1, MAX_TENSORS, f"{what}: the number of tensors")
    out: dict[str, torch.Tensor] = {}
    total = 0
    for key, t in state.items():
        if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_CHARS:
            raise ModelFileError(f"{what}: key {echo(key)} is not a short string")
        if key.endswith(COUNTER_SUFFIX) and isinstance(t, torch.Tensor) and not t.is_floating_point() \
                and t.numel() <= 1 and not t.is_complex():
            continue
        _check_tensor(key, t)
        total += t.numel()
        out[key] = t
    bounded(total, 0, MAX_TOTAL_ELEMENTS, f"{what}: the total number of weights")
    return out


def dims(state: Mapping[str, torch.Tensor], key: str, ndim: int, what: str) -> tuple[int, ...]:
    """The shape of `state[key]`, which must exist and have `ndim` dimensions."""
    if key not in state:
        raise ModelFileError(f"not {what}: missing {key}")
    shape = tuple(state[key].shape)
    if len(shape) != ndim:
        raise ModelFileError(f"{what}: {key} has shape {list(shape)}, expected {ndim} dimensions")
    return shape
