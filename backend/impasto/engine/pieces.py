"""The exact tiled path on OpenVINO: each spatial layer of a style net as a small dynamic-shape OpenVINO model.

The tiler (engine/tiling.py `run_staged`) runs a style net layer by layer, each spatial layer tile by tile, with
whole-image instance-norm statistics; between layers it stores each layer's raw output, and the norm and ReLU
that follow are applied to each tile as the next layer reads it. Here each layer becomes one OpenVINO model (a
"piece", built node by node from the weights: no tracing) that computes one tile from the raw input window:
the pending norm as a per-channel scale and shift and the ReLU (the "prologue"), the nearest upsampling and the
window's crop, the window's border padding (reflection or zeros, given per call), the convolution, and the
tile's per-channel mean and variance for the norm that follows. The window arithmetic stays the layers' own
(`Spatial.window`), shared with torch, so the tiles are the ones torch computes and the result stays exact.
A transposed convolution (Engstrom's) keeps its crop and its statistics in torch.

Why one layer per piece, not longer segments: between two instance norms a style net has exactly one
convolution, and each norm needs the whole image's statistics before the next layer can start.

The pieces are cached on disk beside the whole-network conversions (engine/runtime.py), keyed by the model's
sha256, the OpenVINO version, the precision and PIECES_VERSION; an entry whose files do not match their recorded
hashes is rebuilt. The layers the engine keeps in fp32 (`Spatial.precise`) compile in f32 whatever the precision,
and under bf16 the prologue and the statistics stay f32, as the torch path keeps norms in fp32. `precision` is
the one the whole-network conversion measured acceptable for the model (f32 for the networks whose bf16 error is
too large). A piece that does not build or does not reproduce torch leaves its layer on torch (one log line)."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import threading
from pathlib import Path
from typing import Any

import torch
from torch import nn

from impasto.engine import runtime
from impasto.models.fileformat import sha256_file
from impasto.nets.blocks import (
    Act,
    ConvLayer,
    Layer,
    Norm,
    Plan,
    Spatial,
    TransposeConvLayer,
    UpsampleConvLayer,
    Window,
    relu,
)

log = logging.getLogger(__name__)

PIECES_VERSION = 2  # bump when a piece's graph or the entry format changes: older entries are rebuilt
CHECK_REL = 1e-4  # a piece must reproduce torch's fp32 convolution this closely (of the output's range)


def spatial_layers(plan: Plan) -> list[Spatial]:
    return [step.op for step in plan if isinstance(step, Layer)]


def _roles(plan: Plan) -> list[tuple[bool, bool]]:
    """(prologue, stats) per spatial layer: does the tiler hand it its input with an instance norm and a ReLU
    still to apply (a layer after Layer, Norm, ReLU), and does an instance norm follow it (gather statistics)."""
    roles = []
    for i, step in enumerate(plan):
        if isinstance(step, Layer):
            prologue = (i >= 3 and isinstance(plan[i - 3], Layer) and isinstance(plan[i - 2], Norm)
                        and isinstance(plan[i - 1], Act) and plan[i - 1].fn is relu)  # type: ignore[union-attr]
            roles.append((prologue, i + 1 < len(plan) and isinstance(plan[i + 1], Norm)))
    return roles


def _i64(n: int, name: str) -> Any:
    import openvino as ov
    import openvino.opset13 as ops

    return ops.parameter(ov.PartialShape([n]), ov.Type.i64, name=name)


def piece_model(op: Spatial, prologue: bool, stats: bool) -> Any:
    """One spatial layer's tile as an ov.Model with any H and W. Inputs: the raw input window; with `prologue`
    the norm's per-channel scale and shift (then a ReLU); then the window's border padding (pads_begin, pads_end,
    NCHW) and, for an upsampling layer, the rows and columns of the upsampled window to keep (start, stop).
    Outputs: the tile, and with `stats` its per-channel mean and variance. A transposed convolution has no
    padding inputs: its crop is done by the caller. The prologue and the statistics are kept f32 under bf16."""
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    conv = op.bare_conv
    if conv.groups != 1 or tuple(conv.dilation) != (1, 1) or tuple(conv.padding) != (0, 0):
        raise runtime.Unsupported("a grouped, dilated or padded convolution")
    cin = conv.in_channels
    x = ops.parameter(ov.PartialShape([1, cin, -1, -1]), ov.Type.f32, name="x")
    inputs, precise = [x], []
    t = x
    if prologue:
        scale = ops.parameter(ov.PartialShape([1, cin, 1, 1]), ov.Type.f32, name="scale")
        shift = ops.parameter(ov.PartialShape([1, cin, 1, 1]), ov.Type.f32, name="shift")
        inputs += [scale, shift]
        mul = ops.multiply(t, scale)
        add = ops.add(mul, shift)
        t = ops.relu(add)
        precise += [mul, add, t]
    axes = ops.constant(np.array([2, 3], np.int64))
    if isinstance(op, UpsampleConvLayer):
        t = ops.interpolate(t, ops.constant(np.array([op.up, op.up], np.float32)), "nearest", "scales", axes=axes,
                            nearest_mode="floor", coordinate_transformation_mode="asymmetric")
        start, stop = _i64(2, "start"), _i64(2, "stop")
        inputs += [start, stop]
        t = ops.slice(t, start, stop, ops.constant(np.array([1, 1], np.int64)), axes)
    if isinstance(op, ConvLayer | UpsampleConvLayer):
        pads_begin, pads_end = _i64(4, "pads_begin"), _i64(4, "pads_end")
        inputs += [pads_begin, pads_end]
        t = ops.pad(t, pads_begin, pads_end, "reflect" if op.pad_mode == "reflect" else "constant")
    w = ops.constant(conv.weight.detach().float().cpu().numpy())
    stride = [int(s) for s in conv.stride]
    if isinstance(op, TransposeConvLayer) and isinstance(conv, nn.ConvTranspose2d):
        if tuple(conv.output_padding) != (0, 0):
            raise runtime.Unsupported("a transposed convolution with output padding")
        y = ops.convolution_backprop_data(t, w, stride, pads_begin=[0, 0], pads_end=[0, 0], dilations=[1, 1])
        stats = False  # of the cropped tile: the caller computes them
    elif isinstance(op, ConvLayer | UpsampleConvLayer):
        y = ops.convolution(t, w, stride, [0, 0], [0, 0], [1, 1])
    else:
        raise runtime.Unsupported(f"spatial layer {type(op).__name__}")
    if conv.bias is not None:
        y = ops.add(y, ops.constant(conv.bias.detach().float().cpu().numpy().reshape(1, -1, 1, 1)))
    outputs = [y]
    if stats:
        mean = ops.reduce_mean(y, axes, keep_dims=True)
        diff = ops.subtract(y, mean)
        square = ops.multiply(diff, diff)
        var = ops.reduce_mean(square, axes, keep_dims=False)
        mean_out = ops.reduce_mean(y, axes, keep_dims=False)
        outputs += [mean_out, var]
        precise += [mean, diff, square, var, mean_out]
    for node in precise:
        node.get_rt_info()[runtime._PRECISE] = ""
    return ov.Model(outputs, inputs, "piece")


# ---- the disk cache ----


def entry_dir(sha: str, precision: str, version: str) -> Path:
    tag = re.sub(r"[^0-9A-Za-z.]+", "_", version.split("-")[0])
    return runtime.cache_root() / "openvino" / f"{sha[:32]}-pieces-{precision}-ov{tag}-x{PIECES_VERSION}"


def _read(folder: Path, version: str, count: int) -> dict[int, Any] | None:
    """{layer index: ov.Model} from a cached entry, or None when it is missing, stale or damaged (rebuild)."""
    meta_path = folder / "entry.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if (meta.get("openvino") != version or meta.get("pieces_version") != PIECES_VERSION
                or meta.get("layers") != count):
            return None
        models = {}
        for key, files in meta["pieces"].items():
            for name, digest in files.items():
                if sha256_file(folder / name) != digest:
                    return None
            models[int(key)] = runtime._read_model(folder / f"piece{int(key)}.xml")
        return models
    except Exception as exc:  # any damage at all means: rebuild
        log.info("rebuilding the OpenVINO cache entry %s (%s)", folder.name, exc)
        return None


def _build(folder: Path, layers: list[Spatial], roles: list[tuple[bool, bool]], version: str) -> dict[int, Any]:
    """Build, check and save every piece in a temporary folder, then rename it into place (as runtime.py does).
    A layer whose piece fails is left out of the entry (it runs on torch) with one log line."""
    import openvino as ov

    tmp, folder = runtime.stage_entry(folder)
    try:
        models: dict[int, Any] = {}
        files: dict[str, dict[str, str]] = {}
        for i, (op, (prologue, stats)) in enumerate(zip(layers, roles, strict=True)):
            try:
                ov.save_model(piece_model(op, prologue, stats), str(tmp / f"piece{i}.xml"), compress_to_fp16=False)
                model = runtime._read_model(tmp / f"piece{i}.xml")  # checked as later processes read it
                _check(op, prologue, stats, model)
            except Exception as exc:
                log.warning("layer %d (%s) does not run on OpenVINO (%s: %s); it runs on torch", i,
                            type(op).__name__, type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
                continue
            models[i] = model
            files[str(i)] = {name: sha256_file(tmp / name) for name in (f"piece{i}.xml", f"piece{i}.bin")}
        runtime.commit_entry(tmp, folder, {"openvino": version, "pieces_version": PIECES_VERSION,
                                           "layers": len(layers), "pieces": files})
        return models
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_pieces(plan: Plan, sha: str, precision: str) -> dict[int, Any]:
    """{spatial layer index: ov.Model} for a plan's layers, from the disk cache or built and cached now."""
    version = runtime.openvino_version()
    if version is None:
        raise runtime.Unsupported("OpenVINO does not load here")
    layers = spatial_layers(plan)
    folder = entry_dir(sha, precision, version)
    found = _read(folder, version, len(layers))
    return found if found is not None else _build(folder, layers, _roles(plan), version)


# ---- running ----


class Pieces:
    """A style net's layers on OpenVINO, for `run_staged(..., pieces=pieces)`: `pieces(op)` gives the layer's
    `Piece` (or None: that layer runs on torch). Built and compiled on first use, so a model that never tiles
    costs nothing; a failure there leaves every layer on torch, with one log line."""

    def __init__(self, plan: Plan, sha: str, precision: str, threads: int | None = None):
        self.plan, self.sha, self.precision, self.threads = plan, sha, precision, threads
        self._compiled: dict[Spatial, tuple[Any, bool, bool]] | None = None
        self._lock = threading.Lock()

    def compiled(self) -> dict[Spatial, tuple[Any, bool, bool]]:
        """{layer: (compiled piece, prologue, stats)}."""
        with self._lock:
            if self._compiled is None:
                self._compiled = {}
                try:
                    models = load_pieces(self.plan, self.sha, self.precision)
                    for i, (op, roles) in enumerate(zip(spatial_layers(self.plan), _roles(self.plan), strict=True)):
                        if i in models:
                            precision = "f32" if op.precise else self.precision
                            self._compiled[op] = (runtime.compile_model(models[i], precision, self.threads), *roles)
                except Exception as exc:
                    log.warning("the tiled path runs on torch (%s: %s)", type(exc).__name__,
                                str(exc).splitlines()[0][:200] if str(exc) else "")
                    self._compiled = {}
            return self._compiled

    def __call__(self, op: Spatial) -> Piece | None:
        found = self.compiled().get(op)
        return None if found is None else Piece(op, *found)


def _np(t: torch.Tensor) -> Any:
    return t.detach().to("cpu", torch.float32).contiguous().numpy()


class Piece:
    """One layer's tiles on OpenVINO, with one inference request (made per layer and run, so that a warm server
    does not hold a tile's buffers between jobs). Called as the tiler calls `Spatial.run`, on the raw input
    window, with the pending instance norm (scale, shift) when `prologue`; returns the tile and, when the piece
    gathers them, its per-channel mean and variance. The tile shares the request's output buffer: it is valid
    until the next call (the tiler copies each tile out at once)."""

    def __init__(self, op: Spatial, compiled: Any, prologue: bool, stats: bool):
        self.op, self.prologue, self.stats, self.compiled = op, prologue, stats, compiled
        self.request: Any = compiled.create_infer_request()
        self._affine: list[Any] = []
        self._buffer: torch.Tensor | None = None  # the input windows, copied here: no new pages for each tile

    def close(self) -> None:
        """Free the layer's working memory. OpenVINO's CPU plugin keeps a compiled model's intermediate buffers,
        sized to the largest tile it ran, until told otherwise: without this a 2048x2048 image left ~5 GB held
        by the sixteen pieces of a style net (measured), with it each layer's buffers go when the layer is done."""
        self.request = self._buffer = None
        with contextlib.suppress(Exception):  # an older OpenVINO without it only keeps the memory
            self.compiled.release_memory()

    def __call__(self, x: torch.Tensor, wh: Window, ww: Window, oh: int, ow: int,
                 affine: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor | None,
                                                                             torch.Tensor | None]:
        import numpy as np

        op = self.op
        if self.prologue != (affine is not None):
            raise ValueError("a piece's prologue and the pending steps disagree")
        self._affine = [_np(affine[0]), _np(affine[1])] if affine is not None else []
        if isinstance(op, TransposeConvLayer):  # the crop stays in the layer's own code
            return op.run(x, wh, ww, oh, ow, self._infer), None, None
        feeds = [self._window(x), *self._affine]
        if isinstance(op, UpsampleConvLayer):
            hh, wd = oh + op.kernel - 1 - wh.pad_lo - wh.pad_hi, ow + op.kernel - 1 - ww.pad_lo - ww.pad_hi
            feeds += [np.array([wh.crop, ww.crop], np.int64), np.array([wh.crop + hh, ww.crop + wd], np.int64)]
        feeds += [np.array([0, 0, wh.pad_lo, ww.pad_lo], np.int64), np.array([0, 0, wh.pad_hi, ww.pad_hi], np.int64)]
        if self.request is None:
            self.request = self.compiled.create_infer_request()
        self.request.infer(feeds, share_inputs=True)
        out = [torch.from_numpy(self.request.get_output_tensor(i).data) for i in range(3 if self.stats else 1)]
        return (out[0], out[1][0], out[2][0]) if self.stats else (out[0], None, None)

    def _window(self, x: torch.Tensor) -> Any:
        """`x` as a contiguous float32 array in this piece's reused buffer (valid until the next call)."""
        n = x.numel()
        if self._buffer is None or self._buffer.numel() < n:
            self._buffer = torch.empty(n, dtype=torch.float32)
        window = self._buffer[:n].view(x.shape)
        window.copy_(x)
        return window.numpy()

    def _infer(self, x: torch.Tensor) -> torch.Tensor:
        if self.request is None:
            self.request = self.compiled.create_infer_request()
        self.request.infer([self._window(x), *self._affine], share_inputs=True)
        return torch.from_numpy(self.request.get_output_tensor(0).data)


def _check(op: Spatial, prologue: bool, stats: bool, model: Any) -> None:
    """A fresh piece in f32 against torch on a small odd-sized input, for the whole window and an inner one
    (a graph with a frozen size, or a padding or crop taken wrong, fails here)."""
    g = torch.Generator().manual_seed(0)
    cin = op.channels[0]
    x = torch.rand(1, cin, 13, 11, generator=g) * 4 - 2
    affine = (torch.rand(1, cin, 1, 1, generator=g) + 0.5, torch.rand(1, cin, 1, 1, generator=g) - 0.5)
    with torch.inference_mode(), torch.autocast("cpu", enabled=False):
        src = torch.relu(x * affine[0] + affine[1]) if prologue else x
        want = op(src).float()
    piece = Piece(op, runtime.compile_model(model, "f32", 1), prologue, stats)
    oh, ow = want.shape[-2:]
    for (y0, y1), (x0, x1) in (((0, oh), (0, ow)), ((1, oh - 2), (2, ow - 1))):
        wh, ww = op.window(y0, y1, x.shape[2]), op.window(x0, x1, x.shape[3])
        got, mean, var = piece(x[..., wh.i0 : wh.i1, ww.i0 : ww.i1], wh, ww, y1 - y0, x1 - x0,
                               affine if prologue else None)
        part = want[..., y0:y1, x0:x1]
        if got.shape != part.shape:
            raise runtime.Unsupported(f"the piece returns {tuple(got.shape)}, torch {tuple(part.shape)}")
        diff, scale = float((got - part).abs().max()), float(part.abs().max()) + 1e-6
        if mean is not None and var is not None:
            var_want, mean_want = torch.var_mean(part[0], dim=(1, 2), correction=0)
            diff = max(diff, float((mean - mean_want).abs().max()), float((var - var_want).abs().max()) / scale)
        if not diff <= CHECK_REL * scale:
            raise runtime.Unsupported(f"the piece differs from torch by {diff:.3g} (of {scale:.3g})")
