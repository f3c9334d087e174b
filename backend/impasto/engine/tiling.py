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
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from impasto.cancel import CancelToken, Progress, no_progress
from impasto.engine import whole
from impasto.errors import OutOfMemory, ResourceExhausted
from impasto.nets.blocks import Act, Add, Layer, Norm, Plan, Push, Spatial, UpsampleConvLayer, Window, relu
from impasto.nets.spec import NetSpec, spec_of

log = logging.getLogger(__name__)

_OOM = (OutOfMemory, torch.OutOfMemoryError, MemoryError)



class Piece(Protocol):
    """A spatial layer's tiles computed elsewhere (engine/pieces.py: OpenVINO), called as `Spatial.run` is, on the
    raw input window, with the pending instance norm (scale, shift), then a ReLU, applied first when `prologue`.
    Returns the tile (valid until the next call) and, where the piece gathers them, its per-channel mean and
    variance."""

    prologue: bool

    def __call__(self, x: torch.Tensor, wh: Window, ww: Window, oh: int, ow: int,
                 affine: tuple[torch.Tensor, torch.Tensor] | None
                 ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]: ...

    def close(self) -> None:
        """The layer is done: free what the piece holds for it."""


LayerPieces = Callable[[Spatial], Piece | None]  # a layer's piece, or None: that layer runs on torch


@dataclass(frozen=True)
class RunConfig:
    """How to run one network call.

    `tile` is the side, in pixels, of the piece of a layer's output computed at once:
    - style nets (plan, run layer by layer): of each layer's *output*. At the full-resolution layers a tile is
      tile x tile image pixels; the middle layers run at a quarter of the image's side, so there one tile
      covers (4 tile)^2 image pixels.
    - SR nets (run whole, in windows): of the *input* (low-resolution) image. Each window reads `halo` more
      on every side and produces (scale x tile)^2 output pixels.
    Either way a tile's working memory is about tile^2 x the widest layer's channels."""

    device: torch.device = torch.device("cpu")
    tile: int = 512  # tile side in pixels: each layer's output (style) or the input image (SR); see above
    budget: int = 4 << 30  # bytes of working memory for one network call
    autocast: torch.dtype | None = None  # bf16/fp16 autocast, or None for fp32
    min_tile: int = 16
    force_tiles: bool = False  # tile even when the whole image fits (tests, benchmarks)


def _autocast(cfg: RunConfig) -> AbstractContextManager:
    if cfg.autocast is None:
        return nullcontext()
    return torch.autocast(cfg.device.type, dtype=cfg.autocast)


def _spans(n: int, tile: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, tile):
        yield start, min(start + tile, n)


# ---- memory estimates (bytes, float32, x2 for padded copies and the output) ----


def _ratio(op: Spatial) -> float:
    return op.up / op.down


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


def _tile_bytes(op: Spatial, tile: int) -> float:
    cin, cout = op.channels
    k = op.kernel
    src = tile / _ratio(op) + k
    up = cin * (tile + k) ** 2 if isinstance(op, UpsampleConvLayer) else 0.0
    return (cin * src * src + up + cout * tile * tile) * 4 * 2


def local_bytes_per_pixel(spec: NetSpec) -> float:
    """Peak working bytes per *input* pixel of a local (SR) net."""
    return spec.channels * 4 * 4 * spec.scale * spec.scale * 2


# ---- style nets: layer-by-layer with whole-image instance-norm statistics ----
#
# What is stored between layers is each layer's raw output. The pointwise steps that follow it (the instance norm,
# once its whole-image statistics are known, and the activation) are not applied to the stored tensor but to each
# tile as the next layer reads it, and the statistics are gathered while the tiles are written: the full-size
# tensors are written once and read once per layer, with no separate passes for statistics, norm and activation.
# The steps are materialised only where a tensor is needed as it is: a residual block's input (Push) and sum (Add).


class _Stats:
    """Per-channel mean and variance of a layer's whole output, gathered tile by tile as its tiles are written:
    each tile's float32 mean and variance (torch.var_mean), combined pairwise in float64 (Chan et al. 1979)."""

    def __init__(self, channels: int):
        self.n = 0
        self.mean = torch.zeros(channels, dtype=torch.float64)
        self.m2 = torch.zeros(channels, dtype=torch.float64)

    def add(self, y: torch.Tensor) -> None:
        var, mean = torch.var_mean(y[0].float(), dim=(1, 2), correction=0)
        self.add_moments(mean, var, y.shape[-2] * y.shape[-1])

    def add_moments(self, mean: torch.Tensor, var: torch.Tensor, k: int) -> None:
        n, delta = self.n + k, mean.double().cpu() - self.mean
        self.mean += delta * (k / n)
        self.m2 += var.double().cpu() * k + delta * delta * (self.n * k / n)
        self.n = n

    def affine(self, norm: nn.InstanceNorm2d) -> _Affine:
        scale = 1.0 / torch.sqrt(self.m2 / max(self.n, 1) + norm.eps)
        if norm.affine:
            scale = scale * norm.weight.detach().double().cpu()
            shift = norm.bias.detach().double().cpu() - self.mean * scale
        else:
            shift = -self.mean * scale
        return _Affine(scale.float()[None, :, None, None], shift.float()[None, :, None, None])


class _Affine:
    """An instance norm with its whole-image statistics: x * scale + shift per channel."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor):
        self.scale, self.shift = scale, shift

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale.device != x.device:
            self.scale, self.shift = self.scale.to(x.device), self.shift.to(x.device)
        return torch.addcmul(self.shift, x, self.scale)


Pointwise = Callable[[torch.Tensor], torch.Tensor]


def _pointwise(x: torch.Tensor, steps: list[Pointwise]) -> torch.Tensor:
    with torch.autocast(x.device.type, enabled=False):  # as the torch path: norms and activations in fp32
        for fn in steps:
            x = fn(x)
    return x


def _materialise(x: torch.Tensor, steps: list[Pointwise], stack: list[torch.Tensor],
                 chunk_rows: int = 256) -> torch.Tensor:
    """`x` with the pending pointwise `steps` applied (in place, by row chunks, unless a skip still needs `x`)."""
    if not steps:
        return x
    if any(t is x for t in stack):
        x = x.clone()
    with torch.inference_mode():
        for r0 in range(0, x.shape[2], chunk_rows):
            x[:, :, r0 : r0 + chunk_rows] = _pointwise(x[:, :, r0 : r0 + chunk_rows], steps)
    return x


def _run_spatial_tiled(
    op: Spatial, x: torch.Tensor, steps: list[Pointwise], cfg: RunConfig, tile: int, tick: _Ticker,
    cancel: CancelToken | None, piece: Piece | None = None, stats: _Stats | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """`op` on `steps` applied to `x`, tile by tile; the statistics of the output go to `stats`. A `piece` computes
    the tiles (with the steps) where it takes the steps pending; otherwise torch does."""
    affine = None
    if piece is not None and piece.prologue and len(steps) == 2 and isinstance(steps[0], _Affine) \
            and steps[1] is relu:
        affine = (steps[0].scale, steps[0].shift)
    elif piece is not None and (piece.prologue or steps):
        log.debug("%s: the pending steps are not the piece's; torch runs it", type(op).__name__)
        piece = None
    _, _, h, w = x.shape
    oh, ow = op.out_size(h), op.out_size(w)
    cout = op.channels[1]
    if out is None or out.shape != (1, cout, oh, ow):
        out = torch.empty((1, cout, oh, ow), dtype=torch.float32)
    for y0, y1 in _spans(oh, tile):
        wh = op.window(y0, y1, h)
        for x0, x1 in _spans(ow, tile):
            if cancel is not None:
                cancel.check()
            ww = op.window(x0, x1, w)
            with torch.inference_mode():
                mean = var = None
                if piece is not None:
                    y, mean, var = piece(x[..., wh.i0 : wh.i1, ww.i0 : ww.i1], wh, ww, y1 - y0, x1 - x0, affine)
                else:
                    region = _pointwise(x[..., wh.i0 : wh.i1, ww.i0 : ww.i1].to(cfg.device), steps)
                    with nullcontext() if op.precise else _autocast(cfg):
                        y = op.run(region, wh, ww, y1 - y0, x1 - x0)
                out[..., y0:y1, x0:x1] = y  # copied out now: a piece reuses its output buffer on the next tile
                if stats is not None and mean is not None and var is not None:
                    stats.add_moments(mean, var, (y1 - y0) * (x1 - x0))
                elif stats is not None:
                    stats.add(out[..., y0:y1, x0:x1])
            tick()
    return out


# On OpenVINO a layer's tile holds several intermediate copies of its window inside the piece (the prologue, the
# padding or upsampling, the statistics): tiles of the wide layers are kept to about this many elements per
# channel-plane set (128 channels x 256 x 256, 32 MiB in float32). Measured at 2048x2048 with 512 px tiles: the
# pieces' peak was ~1.5 GB above torch's; a 256 px tile of a 128-channel layer runs as fast per pixel as a 512 one.
PIECE_TILE_ELEMENTS = 128 * 256 * 256


def _layer_tile(op: Spatial, tile: int, pieces: bool) -> int:
    if not pieces:
        return tile
    return min(tile, max(16, int(math.sqrt(PIECE_TILE_ELEMENTS / max(op.channels))) // 8 * 8))


def _out_shapes(spatial: list[Spatial], h: int, w: int) -> list[torch.Size]:
    shapes = []
    for op in spatial:
        h, w = op.out_size(h), op.out_size(w)
        shapes.append(torch.Size((1, op.channels[1], h, w)))
    return shapes


class _Ticker:
    def __init__(self, total: int, progress: Progress, stage: str):
        self.total, self.done, self.progress, self.stage = max(total, 1), 0, progress, stage

    def __call__(self) -> None:
        self.done += 1
        self.progress(self.stage, min(self.done / self.total, 1.0))


def run_staged(
    plan: Plan, x: torch.Tensor, cfg: RunConfig, tile: int, progress: Progress, cancel: CancelToken | None,
    stage: str = "stylize", pieces: LayerPieces | None = None,
) -> torch.Tensor:
    """Run a style net's plan tile by tile with whole-image instance-norm statistics. x: (1, 3, H, W).
    `pieces` gives the layers' tiles on another runtime (engine/pieces.py); None: all on torch."""
    spatial = [step.op for step in plan if isinstance(step, Layer)]
    need = max(_tile_bytes(op, tile) for op in spatial)
    if need > cfg.budget:
        raise OutOfMemory(f"a {tile}px tile needs about {need / 2**20:.0f} MiB, over the budget")
    # count tiles for progress
    total, h, w = 0, x.shape[2], x.shape[3]
    for op in spatial:
        h, w = op.out_size(h), op.out_size(w)
        side = _layer_tile(op, tile, pieces is not None)
        total += math.ceil(h / side) * math.ceil(w / side)
    tick = _Ticker(total, progress, stage)
    cur = x.detach().float().cpu().contiguous()
    steps: list[Pointwise] = []  # pointwise steps pending on `cur` (see above)
    stats: _Stats | None = None  # of `cur`, when it is a layer's output with nothing pending
    stack: list[torch.Tensor] = []
    # Stored tensors no longer needed, kept for the next layer whose output has their shape (the residual blocks':
    # all alike): a new full-size tensor costs a page fault per 4 KiB on its first write, measured at ~0.3 s of
    # system time per residual layer at 2048x2048 on the development machine. Only a tensor the next layer can
    # use is kept, so the peak memory does not grow.
    spare: list[torch.Tensor] = []
    shapes = _out_shapes(spatial, x.shape[2], x.shape[3])
    for i, step in enumerate(plan):
        match step:
            case Layer(op=op):
                stats = _Stats(op.channels[1]) if i + 1 < len(plan) and isinstance(plan[i + 1], Norm) else None
                piece = pieces(op) if pieces is not None else None
                out = spare.pop() if spare else None
                try:
                    new = _run_spatial_tiled(op, cur, steps, cfg, _layer_tile(op, tile, pieces is not None), tick,
                                             cancel, piece, stats, out)
                finally:
                    if piece is not None:
                        piece.close()
                shapes.pop(0)
                if cur is not x and not any(t is cur for t in stack):
                    spare.append(cur)
                spare = [t for t in spare if shapes and t.shape == shapes[0]][:1]
                cur, steps = new, []
            case Norm(norm=norm):
                if stats is None:  # not straight after a layer (no plan does this today): one pass for them
                    cur, steps = _materialise(cur, steps, stack), []
                    stats = _Stats(cur.shape[1])
                    for r0 in range(0, cur.shape[2], 256):
                        stats.add(cur[:, :, r0 : r0 + 256])
                steps.append(stats.affine(norm))
                stats = None
            case Act(fn=fn):
                steps.append(fn)
                stats = None
            case Push():
                cur, steps, stats = _materialise(cur, steps, stack), [], None
                stack.append(cur)  # not copied: nothing changes a stored tensor in place while a skip holds it
            case Add():
                cur, steps, stats = _materialise(cur, steps, stack), [], None
                skip = stack.pop()
                cur.add_(skip)
                if skip is not x and shapes and skip.shape == shapes[0] and not spare:
                    spare.append(skip)
    return _materialise(cur, steps, stack)


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


def _pad_to_multiple(x: torch.Tensor, m: int, min_side: int = MIN_SIDE) -> torch.Tensor:
    """Pad right and bottom to at least `min_side` and a multiple of `m` (reflection where the image is wider
    than the pad, else replication); the caller crops the result back."""
    h, w = x.shape[-2:]
    ph, pw = max((-h) % m, min_side - h), max((-w) % m, min_side - w)
    ph, pw = ph + (-(h + ph)) % m, pw + (-(w + pw)) % m
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
    if not cfg.force_tiles and whole_bytes(spec, *xp.shape[-2:]) <= cfg.budget:
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
    tile = cfg.tile
    while True:
        try:
            if spec.plan is not None:
                y = run_staged(spec.plan, xp, cfg, tile, progress, cancel, stage, pieces)
            else:
                y = run_windows(net, spec, xp, cfg, tile, progress, cancel, stage)
            return y[..., : h * scale, : w * scale]
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
