"""The exact tiled path of a style net: layer by layer, each spatial layer tile by tile, with whole-image
instance-norm statistics (engine/tiling.py decides when; engine/pieces.py runs the layers on OpenVINO).

Each spatial layer is computed tile by tile from the stored full-size input of that layer (each tile reads exactly
the input window it needs, see `nets.blocks.Window`), and each instance norm uses statistics over the *whole*
image, so tiled output equals untiled output; per-tile statistics would leave visible seams (about 2% of range).
Large stored layers can live in a temporary file instead of memory (engine/spill.py)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from impasto.cancel import CancelToken, Progress
from impasto.engine import spill
from impasto.engine.spill import Spilled, Stored
from impasto.errors import OutOfMemory
from impasto.nets.blocks import Act, Add, Layer, Norm, Plan, Push, Spatial, UpsampleConvLayer, Window, relu

log = logging.getLogger(__name__)


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
    # the tiled path keeps a stored layer bigger than this (bytes) in a temporary file, not in memory; None: a
    # quarter of the budget (engine/spill.py)
    spill_over: int | None = None

    @property
    def spill_bytes(self) -> int:
        """A stored layer bigger than this many bytes is kept in a temporary file (see `spill_over`)."""
        return self.budget // 4 if self.spill_over is None else self.spill_over


def _autocast(cfg: RunConfig) -> AbstractContextManager:
    if cfg.autocast is None:
        return nullcontext()
    return torch.autocast(cfg.device.type, dtype=cfg.autocast)


def _spans(n: int, tile: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, tile):
        yield start, min(start + tile, n)


def _ratio(op: Spatial) -> float:
    return op.up / op.down


def _tile_bytes(op: Spatial, tile: int) -> float:
    cin, cout = op.channels
    k = op.kernel
    src = tile / _ratio(op) + k
    up = cin * (tile + k) ** 2 if isinstance(op, UpsampleConvLayer) else 0.0
    return (cin * src * src + up + cout * tile * tile) * 4 * 2


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


def _materialise(x: Stored, steps: list[Pointwise], stack: list[Stored], chunk_rows: int = 64) -> Stored:
    """`x` with the pending pointwise `steps` applied (in place, by row bands, unless a skip still needs `x`)."""
    if not steps:
        return x
    dst = x
    if any(t is x for t in stack):
        dst = x.clone() if isinstance(x, torch.Tensor) else Spilled(*x.shape[1:])
    with torch.inference_mode():
        for r0, r1 in spill.bands(x, chunk_rows):
            spill.write(dst, r0, 0, _pointwise(spill.read(x, r0, r1, 0, x.shape[3]), steps))
    return dst


def _add(x: Stored, skip: Stored, chunk_rows: int = 64) -> None:
    """x += skip, in place."""
    if isinstance(x, torch.Tensor) and isinstance(skip, torch.Tensor):
        x.add_(skip)
        return
    for r0, r1 in spill.bands(x, chunk_rows):
        band = spill.read(x, r0, r1, 0, x.shape[3]) + spill.read(skip, r0, r1, 0, x.shape[3])
        spill.write(x, r0, 0, band)


def _run_spatial_tiled(
    op: Spatial, x: Stored, steps: list[Pointwise], cfg: RunConfig, tile: int, tick: _Ticker,
    cancel: CancelToken | None, piece: Piece | None = None, stats: _Stats | None = None,
    out: Stored | None = None,
) -> Stored:
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
        out = torch.empty((1, cout, oh, ow), dtype=torch.float32)  # see run_staged for a Spilled `out`
    for y0, y1 in _spans(oh, tile):
        wh = op.window(y0, y1, h)
        for x0, x1 in _spans(ow, tile):
            if cancel is not None:
                cancel.check()
            ww = op.window(x0, x1, w)
            with torch.inference_mode():
                mean = var = None
                window = spill.read(x, wh.i0, wh.i1, ww.i0, ww.i1)
                if piece is not None:
                    y, mean, var = piece(window, wh, ww, y1 - y0, x1 - x0, affine)
                else:
                    region = _pointwise(window.to(cfg.device), steps)
                    with nullcontext() if op.precise else _autocast(cfg):
                        y = op.run(region, wh, ww, y1 - y0, x1 - x0)
                    y = y.float().cpu()  # the values stored, hence the ones the statistics are of
                if stats is not None and mean is not None and var is not None:
                    stats.add_moments(mean, var, (y1 - y0) * (x1 - x0))
                elif stats is not None:
                    stats.add(y)
                spill.write(out, y0, x0, y)  # copied out now: a piece reuses its output buffer on the next tile
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
    plan: Plan, x: Stored, cfg: RunConfig, tile: int, progress: Progress, cancel: CancelToken | None,
    stage: str = "stylize", pieces: LayerPieces | None = None,
) -> Stored:
    """Run a style net's plan tile by tile with whole-image instance-norm statistics. x: (1, 3, H, W), a tensor or
    a `spill.Source` read window by window. `pieces` gives the layers' tiles on another runtime (engine/pieces.py);
    None: all on torch. Returns the output as it is kept: a tensor, or a temporary file (`spill.to_tensor`)."""
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
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().contiguous()
    cur: Stored = x
    steps: list[Pointwise] = []  # pointwise steps pending on `cur` (see above)
    stats: _Stats | None = None  # of `cur`, when it is a layer's output with nothing pending
    stack: list[Stored] = []
    spill_over = cfg.spill_bytes
    # Stored tensors no longer needed, kept for the next layer whose output has their shape (the residual blocks':
    # all alike): a new full-size tensor costs a page fault per 4 KiB on its first write, measured at ~0.3 s of
    # system time per residual layer at 2048x2048 on the development machine. Only a tensor the next layer can
    # use is kept, so the peak memory does not grow.
    spare: list[torch.Tensor] = []
    # A layer output bigger than `spill_over` bytes goes to a temporary file (engine/spill.py); a layer reading it
    # holds only its windows in memory.
    shapes = _out_shapes(spatial, x.shape[2], x.shape[3])
    for i, step in enumerate(plan):
        match step:
            case Layer(op=op):
                stats = _Stats(op.channels[1]) if i + 1 < len(plan) and isinstance(plan[i + 1], Norm) else None
                piece = pieces(op) if pieces is not None else None
                out: Stored | None = spare.pop() if spare else None
                if math.prod(shapes[0]) * 4 > spill_over:
                    out = Spilled(*shapes[0][1:])
                try:
                    new = _run_spatial_tiled(op, cur, steps, cfg, _layer_tile(op, tile, pieces is not None), tick,
                                             cancel, piece, stats, out)
                finally:
                    if piece is not None:
                        piece.close()
                shapes.pop(0)
                if cur is not x and isinstance(cur, torch.Tensor) and not any(t is cur for t in stack):
                    spare.append(cur)
                spare = [t for t in spare if shapes and t.shape == shapes[0]][:1]
                cur, steps = new, []
            case Norm(norm=norm):
                if stats is None:  # not straight after a layer (no plan does this today): one pass for them
                    cur, steps = _materialise(cur, steps, stack), []
                    stats = _Stats(cur.shape[1])
                    for r0, r1 in spill.bands(cur, 64):
                        stats.add(spill.read(cur, r0, r1, 0, cur.shape[3]))
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
                _add(cur, skip)
                if skip is not x and isinstance(skip, torch.Tensor) and shapes and skip.shape == shapes[0] \
                        and not spare:
                    spare.append(skip)
    return _materialise(cur, steps, stack)


