"""Inference on images of any size: whole when it fits the memory budget, tiled otherwise.

Two exact tiling schemes:
- Style nets (instance norm): the plan is run layer by layer. Each spatial layer is computed tile by
  tile from the stored full-size input of that layer (each tile reads exactly the input window it needs,
  see `nets.blocks.Window`), and each instance norm uses statistics over the *whole* image. Tiled output
  therefore equals untiled output; per-tile statistics would leave visible seams (about 2% of range).
- Local nets (super-resolution, batch norm = fixed affine at inference): fixed-size windows with a halo
  that covers the receptive field; only each window's centre is kept (`run_windows`).
An out-of-memory error (real, or a tile over the budget) retries with tiles of half the size.
Which scheme, the padding, the scale and the halo all come from the network's `NetSpec` (nets.spec)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from impasto.cancel import CancelToken, Progress, no_progress
from impasto.engine import whole
from impasto.engine.pixels import PixelBuffer
from impasto.engine.spill import Source, Stored, to_tensor
from impasto.engine.staged import LayerPieces, RunConfig, _autocast, _ratio, _spans, _Ticker, run_staged
from impasto.errors import OutOfMemory, ResourceExhausted
from impasto.nets.blocks import Layer, Plan, Push, UpsampleConvLayer
from impasto.nets.spec import NetSpec, spec_of

log = logging.getLogger(__name__)

_OOM = (OutOfMemory, torch.OutOfMemoryError, MemoryError)
T = TypeVar("T")


# ---- memory estimates (bytes, float32, x2 for padded copies and the output) ----


def plan_bytes_per_pixel(plan: Plan) -> float:
    """Peak working bytes per input pixel of a plan run on a whole image."""
    area, peak, live_skip = 1.0, 0.0, 0.0
    for step in plan:
        if isinstance(step, Push):
            live_skip = area
        if not isinstance(step, Layer):
            continue
        op = step.op
        cin, cout = op.channels
        out_area = area * _ratio(op) ** 2
        up = cin * out_area if isinstance(op, UpsampleConvLayer) else 0.0
        peak = max(peak, cin * area + up + cout * out_area + live_skip * cout)
        area = out_area
    return peak * 4 * 2


def local_bytes_per_pixel(spec: NetSpec) -> float:
    """Peak working bytes per *input* pixel of a local (SR) net."""
    return spec.channels * 4 * 4 * spec.scale * spec.scale * 2


# ---- local nets: halo tiles of one fixed shape ----


def _windows(n: int, tile: int, halo: int) -> Iterator[tuple[int, int, int, int]]:
    """(t0, t1, w0, w1): keep [t0, t1) computed from the window [w0, w1). All windows have one size (so a
    compiled net sees one shape); border windows slide inwards instead of shrinking."""
    size = min(tile + 2 * halo, n)
    for t0, t1 in _spans(n, tile):
        w0 = min(max(t0 - halo, 0), n - size)
        yield t0, t1, w0, w0 + size


def run_windows(
    net: nn.Module, spec: NetSpec, x: torch.Tensor, cfg: RunConfig, tile: int, progress: Progress,
    cancel: CancelToken | None, stage: str = "upscale",
) -> torch.Tensor:
    """Run a local net (no plan) in windows of `tile` input pixels plus its halo; keep each window's centre."""
    s, halo = spec.scale, spec.halo
    need = local_bytes_per_pixel(spec) * (tile + 2 * halo) ** 2
    if need > cfg.budget:
        raise OutOfMemory(f"a {tile}px tile needs about {need / 2**20:.0f} MiB, over the budget")
    _, c, h, w = x.shape
    out = torch.empty((1, 3, h * s, w * s), dtype=torch.float32)
    rows, cols = list(_windows(h, tile, halo)), list(_windows(w, tile, halo))
    tick = _Ticker(len(rows) * len(cols), progress, stage)
    for t0, t1, w0, w1 in rows:
        for u0, u1, v0, v1 in cols:
            if cancel is not None:
                cancel.check()
            region = x[..., w0:w1, v0:v1].to(cfg.device)
            with torch.inference_mode(), _autocast(cfg):
                y = net(region)
            out[..., t0 * s : t1 * s, u0 * s : u1 * s] = y[
                ..., (t0 - w0) * s : (t1 - w0) * s, (u0 - v0) * s : (u1 - v0) * s
            ].float().cpu()
            tick()
    return out


# ---- entry point ----


# The smallest side a network is run on: below it the 9x9 convs' reflection pads and the instance norms of
# the downsampled layers have too few pixels (a 4x4 image failed inside torch). Smaller images are padded
# by replicating their edge and the result is cropped back; an editor's tiny selection still works. (8: two
# stride-2 layers leave 2x2 for the instance norms, and a 9x9 conv's reflection pad of 4 fits.)
MIN_SIDE = 8


def _pads(h: int, w: int, m: int, min_side: int = MIN_SIDE) -> tuple[int, int]:
    """The rows and columns `_pad_to_multiple` adds to an (h, w) image."""
    ph, pw = max((-h) % m, min_side - h), max((-w) % m, min_side - w)
    return ph + (-(h + ph)) % m, pw + (-(w + pw)) % m


def _pad_to_multiple(x: torch.Tensor, m: int, min_side: int = MIN_SIDE) -> torch.Tensor:
    """Pad right and bottom to at least `min_side` and a multiple of `m` (reflection where the image is wider
    than the pad, else replication); the caller crops the result back."""
    h, w = x.shape[-2:]
    ph, pw = _pads(h, w, m, min_side)
    if not (ph or pw):
        return x
    if ph >= h or pw >= w:  # reflection needs a wider image than the pad
        return F.pad(x, (0, pw, 0, ph), mode="replicate")
    return F.pad(x, (0, pw, 0, ph), mode="reflect")


def whole_bytes(spec: NetSpec, h: int, w: int) -> float:
    """Working bytes of one whole-image call on an (h, w) input."""
    if spec.plan is not None:
        return plan_bytes_per_pixel(spec.plan) * h * w
    return local_bytes_per_pixel(spec) * h * w


def _run_whole(net: nn.Module, spec: NetSpec, x: torch.Tensor, cfg: RunConfig, progress: Progress,
               cancel: CancelToken | None, stage: str, compiled: nn.Module | None) -> torch.Tensor:
    """One whole-image call that still reports progress and sees a cancel well within a second (issue 13):
    - a torch style net: its plan step by step, big layers in row bands (engine/whole.py), = its forward;
    - a torch SR net: one call, with progress and a cancel check at every convolution (engine/whole.py);
    - torch.compile, or OpenVINO (which polls the cancel token and reports time-based progress itself through
      `network_progress`): one call."""
    h, w = x.shape[-2:]
    with torch.inference_mode(), _autocast(cfg):
        if compiled is None and spec.plan is not None:
            return whole.run_plan_stepped(spec.plan, x.to(cfg.device), progress, cancel, stage)[..., :h, :w]
        if compiled is None and whole.is_torch_net(net):
            return whole.run_local_stepped(net, x.to(cfg.device), spec.halo, progress, cancel, stage)
        with whole.network_progress(progress, stage):
            return (compiled if compiled is not None else net)(x.to(cfg.device))


def run_network(
    net: nn.Module,
    x: torch.Tensor,
    cfg: RunConfig,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
    stage: str = "run",
    compiled: nn.Module | None = None,
    pieces: LayerPieces | None = None,
) -> torch.Tensor:
    """Run `net` on a (1, 3, H, W) 0-255 image: whole if it fits `cfg.budget`, else in tiles, retrying
    with smaller tiles on out-of-memory. Returns a float32 CPU tensor. `compiled` runs whole images in place
    of `net`; `pieces` computes the tiled path's layers (style nets; engine/pieces.py)."""
    h, w = x.shape[-2:]
    spec = spec_of(net)
    xp = _pad_to_multiple(x, spec.multiple)
    scale = spec.scale
    if _runs_whole(spec, xp.shape[-2], xp.shape[-1], cfg):
        try:
            if cancel is not None:
                cancel.check()
            progress(stage, 0.0)
            y = _run_whole(net, spec, xp, cfg, progress, cancel, stage, compiled)
            progress(stage, 1.0)
            return y.float().cpu()[..., : h * scale, : w * scale]
        except _OOM as exc:
            log.warning("whole-image run ran out of memory (%s); tiling instead", exc)
            if cfg.device.type == "cuda":
                torch.cuda.empty_cache()
    plan = spec.plan
    if plan is not None:
        y = _in_tiles(cfg, lambda tile: to_tensor(run_staged(plan, xp, cfg, tile, progress, cancel, stage, pieces)))
    else:
        y = _in_tiles(cfg, lambda tile: run_windows(net, spec, xp, cfg, tile, progress, cancel, stage))
    return y[..., : h * scale, : w * scale]


def _runs_whole(spec: NetSpec, h: int, w: int, cfg: RunConfig) -> bool:
    """Whether `run_network` runs an (h, w) input (padded) whole rather than in tiles."""
    return not cfg.force_tiles and whole_bytes(spec, h, w) <= cfg.budget


def _in_tiles(cfg: RunConfig, run: Callable[[int], T]) -> T:
    """`run(tile)` from `cfg.tile`, again with half the tile after each out-of-memory error, until the tile
    would be under `cfg.min_tile`: then an error saying what to change."""
    tile = cfg.tile
    while True:
        try:
            return run(tile)
        except _OOM as exc:
            if cfg.device.type == "cuda":
                torch.cuda.empty_cache()
            if tile // 2 < cfg.min_tile:
                raise ResourceExhausted(
                    f"the image does not fit in memory even with {tile}px tiles ({exc})",
                    hint="raise the memory budget (--memory-budget) or process at a smaller --scale",
                ) from None
            tile //= 2
            log.info("out of memory; retrying with %dpx tiles", tile)


def streamed_input(net: nn.Module, image: PixelBuffer, cfg: RunConfig, margin: int = 0) -> Source | None:
    """The network's input as a `Source` read from `image` window by window (with `margin` pixels of reflection
    on every side), where `run_network` would take the tiled path of a style net with the input over the size kept
    in memory (the budget's quarter, as the tiled path spills its layers): the whole-size float32 input and output
    then never exist in memory (issue 13: an 8192x8192 stylize within 3 GB). None: run_network on a tensor."""
    spec = spec_of(net)
    h, w = image.height + 2 * margin, image.width + 2 * margin
    ph, pw = _pads(h, w, spec.multiple)
    if spec.plan is None or margin >= min(image.height, image.width) or ph >= h or pw >= w \
            or 3 * 4 * (h + ph) * (w + pw) <= cfg.spill_bytes or _runs_whole(spec, h + ph, w + pw, cfg):
        return None
    return Source(image, margin, ph, pw)


def run_streamed(net: nn.Module, x: Source, cfg: RunConfig, progress: Progress = no_progress,
                 cancel: CancelToken | None = None, stage: str = "run",
                 pieces: LayerPieces | None = None) -> Stored:
    """`run_network`'s tiled path of a style net on a `Source` (see `streamed_input`). Returns the output as the
    tiled path keeps it (a tensor, or a temporary file), padded: the caller reads the rows and columns it needs."""
    plan = spec_of(net).plan
    assert plan is not None
    return _in_tiles(cfg, lambda tile: run_staged(plan, x, cfg, tile, progress, cancel, stage, pieces))
