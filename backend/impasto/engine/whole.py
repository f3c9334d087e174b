"""Whole-image calls that still report progress and see a cancel: a style net's plan run step by step.

One whole-image forward of a style net at 2048x2048 is about 640 GMAC (12 s of eager fp32 on a 2-core CPU), and
a single residual convolution there takes most of a second. So the plan is run here one step at a time
(`nets.blocks.run_step`, the very code `run_plan` runs, hence the same result as the module's forward), and on
the CPU a layer that would take longer than STEP_SECONDS is computed in bands of whole output rows, each band
from exactly the input rows it needs (`Spatial.window`, as the tiler does). Progress is the fraction of the
plan's estimated cost (multiply-accumulates) done, reported after every step or band; the cancel token is
checked before each. How many rows make a band comes from the rate measured on the bands before (`_Pace`).

A network that runs outside torch (the OpenVINO runtime) reports its own progress while it runs: the whole-
image branch sets `network_progress` for the duration of the call and the network reads it."""

from __future__ import annotations

import contextlib
import contextvars
import math
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import nullcontext

import torch
from torch import nn

from impasto.cancel import CancelToken, Progress
from impasto.nets.blocks import Layer, Plan, Spatial, TransposeConvLayer, run_step

STEP_SECONDS = 0.25  # a band or step of about this long: progress and a cancel check well within ~0.5 s
_ELEMENT_COST = 4.0  # cost units per element of a pointwise step (norm, activation, add), against a layer's MACs

_progress: contextvars.ContextVar[tuple[Progress, str] | None] = contextvars.ContextVar(
    "impasto_network_progress", default=None)


@contextlib.contextmanager
def network_progress(progress: Progress, stage: str) -> Iterator[None]:
    """Inside this block (this thread) a network that runs whole outside torch may report `progress(stage, f)`."""
    token = _progress.set((progress, stage))
    try:
        yield
    finally:
        _progress.reset(token)


def current_progress() -> tuple[Progress, str] | None:
    return _progress.get()


class _Pace:
    """Multiply-accumulates per second of the CPU, measured on the bands run so far (process-wide, so a later
    job starts from what the last one measured). The first guess is deliberately low: small first bands."""

    def __init__(self, rate: float = 5e9) -> None:
        self.rate = rate

    def band_cost(self) -> float:
        return self.rate * STEP_SECONDS

    def observe(self, cost: float, seconds: float) -> None:
        if seconds > 0.02 and cost > 0:  # shorter ones measure the overhead, not the rate
            self.rate = 0.5 * self.rate + 0.5 * cost / seconds


PACE = _Pace()


def layer_macs(op: Spatial, oh: int, ow: int) -> float:
    cin, cout = op.channels
    macs = float(oh) * ow * cin * cout * op.kernel * op.kernel
    # a transposed convolution multiplies each *input* pixel by the kernel: its output is up^2 times bigger
    return macs / (op.up * op.up) if isinstance(op, TransposeConvLayer) else macs


def plan_costs(plan: Plan, h: int, w: int, c: int = 3) -> list[float]:
    """Estimated cost of each step on an (h, w) input: MACs for a layer, a few units per element otherwise."""
    costs = []
    for step in plan:
        if isinstance(step, Layer):
            h, w, c = step.op.out_size(h), step.op.out_size(w), step.op.channels[1]
            costs.append(layer_macs(step.op, h, w))
        else:
            costs.append(_ELEMENT_COST * h * w * c)
    return costs


def _banded(op: Spatial, x: torch.Tensor, rows: int, cancel: CancelToken | None,
            done: Callable[[float, float], None]) -> torch.Tensor:
    """`op(x)` computed in bands of `rows` output rows (whole width); `done(cost, seconds)` after each band."""
    _, _, h, w = x.shape
    oh, ow = op.out_size(h), op.out_size(w)
    ww = op.window(0, ow, w)
    out: torch.Tensor | None = None
    for y0 in range(0, oh, rows):
        y1 = min(y0 + rows, oh)
        if cancel is not None:
            cancel.check()
        started = time.monotonic()
        wh = op.window(y0, y1, h)
        y = op.run(x[..., wh.i0 : wh.i1, :], wh, ww, y1 - y0, ow)
        if out is None:
            out = torch.empty((1, y.shape[1], oh, ow), dtype=y.dtype, device=y.device)
        out[..., y0:y1, :] = y
        done(layer_macs(op, y1 - y0, ow), time.monotonic() - started)
    assert out is not None
    return out


def run_plan_stepped(plan: Plan, x: torch.Tensor, progress: Progress, cancel: CancelToken | None,
                     stage: str, pace: _Pace = PACE) -> torch.Tensor:
    """`run_plan(plan, x)` (same result), reporting progress and checking `cancel` between steps and bands.
    Call it under the same inference/autocast context as the module's forward."""
    costs = plan_costs(plan, x.shape[-2], x.shape[-1], x.shape[1])
    total, spent = max(sum(costs), 1.0), 0.0
    banding = x.device.type == "cpu"  # a GPU runs asynchronously: a band's time there measures nothing
    stack: list[torch.Tensor] = []

    def band_done(cost: float, seconds: float) -> None:
        nonlocal spent
        pace.observe(cost, seconds)
        spent += cost
        progress(stage, min(spent / total, 1.0))

    for step, cost in zip(plan, costs, strict=True):
        if cancel is not None:
            cancel.check()
        if banding and isinstance(step, Layer) and cost > 2 * pace.band_cost():
            op, start = step.op, spent
            oh = op.out_size(x.shape[-2])
            rows = max(1, math.floor(oh * pace.band_cost() / cost))
            precise = op.precise and torch.is_autocast_enabled(x.device.type)
            with torch.autocast(x.device.type, enabled=False) if precise else nullcontext():
                x = _banded(op, x.float() if precise else x, rows, cancel, band_done)
            spent = start + cost  # the bands' estimates add up to the layer's; keep the sum exact
        else:
            started = time.monotonic()
            x = run_step(step, x, stack)
            if isinstance(step, Layer):
                pace.observe(cost, time.monotonic() - started)
            spent += cost
        progress(stage, min(spent / total, 1.0))
    return x


def is_torch_net(net: nn.Module) -> bool:
    """A network whose work torch does (it has weights here): one the runner may split. An OpenVINO net has none."""
    return any(True for _ in net.parameters())


def _conv_macs(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> float:
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    where = inputs[0] if isinstance(module, nn.ConvTranspose2d) else output  # transposed: per input pixel
    return float(weight.numel()) * where.shape[-2] * where.shape[-1]


_LOCAL_MACS: weakref.WeakKeyDictionary[nn.Module, float] = weakref.WeakKeyDictionary()


def local_macs_per_pixel(net: nn.Module, halo: int) -> float:
    """Multiply-accumulates per *input* pixel of a local (SR) net, counted once on a small probe (the convs'
    weights times the pixels each one produced); 0 for a net without torch convolutions (OpenVINO)."""
    if net in _LOCAL_MACS:
        return _LOCAL_MACS[net]
    side = 2 * halo + 8
    total = 0.0

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        total += _conv_macs(module, inputs, output)

    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    hooks = [m.register_forward_hook(count) for m in convs]
    try:
        if convs:
            param = next(net.parameters())
            with torch.inference_mode():
                net(torch.zeros(1, 3, side, side, device=param.device))
    finally:
        for hook in hooks:
            hook.remove()
    _LOCAL_MACS[net] = total / (side * side)
    return _LOCAL_MACS[net]


def run_local_stepped(net: nn.Module, x: torch.Tensor, halo: int, progress: Progress, cancel: CancelToken | None,
                      stage: str) -> torch.Tensor:
    """`net(x)` for a torch SR net (the very same call, so the same result), reporting progress after every
    convolution (the fraction of the net's multiply-accumulates done) and checking `cancel` before each.

    Halo windows were measured first and rejected: on this project's x4 SR net (1.3 MMAC per input pixel, halo
    17) a window of ~0.5 s is 75 px wide around a 41 px tile, 3.3x the work of one call; a window giving a
    tolerable 1.6x took 6 s. Per convolution, a 1024x1024 input's 64-channel 3x3 conv takes ~2 s on a 2-core
    CPU, which is the granularity there (the OpenVINO runtime, the CPU default, reports time-based progress)."""
    total = max(local_macs_per_pixel(net, halo) * x.shape[-2] * x.shape[-1], 1.0)
    spent = 0.0

    def before(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if cancel is not None:
            cancel.check()

    def after(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal spent
        spent += _conv_macs(module, inputs, output)
        progress(stage, min(spent / total, 0.999))

    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    hooks = [m.register_forward_pre_hook(before) for m in convs] + [m.register_forward_hook(after) for m in convs]
    try:
        return net(x)
    finally:
        for hook in hooks:
            hook.remove()
