"""The exact tiled path on OpenVINO: each spatial layer's convolution as a small dynamic-shape OpenVINO model.

The tiler (engine/tiling.py `run_staged`) runs a style net layer by layer, each spatial layer tile by tile, with
whole-image instance-norm statistics. Here each layer's *bare* convolution (`Spatial.bare_conv`: padding 0, the
layer's stride) becomes one OpenVINO model with a (1, C, H, W) input of any H, W, built node by node from the
weights (no tracing). The window arithmetic, the border padding of each tile, the nearest upsampling and the
transposed convolution's crop stay in `Spatial.run`, shared with torch, so the tiles are the ones torch computes
and the result stays exact: the statistics, activations and skips are the tiler's, untouched.

Why whole layers and not longer segments: between two instance norms a style net has exactly one convolution,
and each norm needs the whole image's statistics, so a layer is the longest piece the exact path can hand over.

The pieces of a network are cached on disk beside the whole-network conversions (engine/runtime.py), keyed by the
model's sha256, the OpenVINO version, the precision and PIECES_VERSION; an entry whose files do not match their
recorded hashes is rebuilt. Layers the engine keeps in fp32 (`Spatial.precise`) compile in f32 whatever the
precision; `precision` itself is the one the whole-network conversion measured acceptable for this model (f32
for the networks whose bf16 error is too large). A piece that does not build or does not reproduce torch runs on
torch (one log line)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from impasto.engine import runtime
from impasto.models.fileformat import sha256_file
from impasto.nets.blocks import Conv, Layer, Plan, Spatial

log = logging.getLogger(__name__)

PIECES_VERSION = 1  # bump when a piece's graph or the entry format changes: older entries are rebuilt
CHECK_REL = 1e-4  # a piece must reproduce torch's fp32 convolution this closely (of the output's range)


def spatial_layers(plan: Plan) -> list[Spatial]:
    return [step.op for step in plan if isinstance(step, Layer)]


def conv_model(conv: nn.Module) -> Any:
    """The bare convolution `conv` (nn.Conv2d or nn.ConvTranspose2d, padding 0) as an ov.Model, any H and W."""
    import openvino as ov
    import openvino.opset13 as ops

    if not isinstance(conv, nn.Conv2d | nn.ConvTranspose2d):
        raise runtime.Unsupported(f"not a convolution: {type(conv).__name__}")
    if conv.groups != 1 or tuple(conv.dilation) != (1, 1) or tuple(conv.padding) != (0, 0):
        raise runtime.Unsupported("a grouped, dilated or padded convolution")
    stride = [int(s) for s in conv.stride]
    x = ops.parameter(ov.PartialShape([1, conv.in_channels, -1, -1]), ov.Type.f32, name="x")
    w = ops.constant(conv.weight.detach().float().cpu().numpy())
    if isinstance(conv, nn.ConvTranspose2d):
        if tuple(conv.output_padding) != (0, 0):
            raise runtime.Unsupported("a transposed convolution with output padding")
        y = ops.convolution_backprop_data(x, w, stride, pads_begin=[0, 0], pads_end=[0, 0], dilations=[1, 1])
    else:
        y = ops.convolution(x, w, stride, [0, 0], [0, 0], [1, 1])
    if conv.bias is not None:
        y = ops.add(y, ops.constant(conv.bias.detach().float().cpu().numpy().reshape(1, -1, 1, 1)))
    return ov.Model([y], [x], "piece")


def _check(conv: nn.Conv2d | nn.ConvTranspose2d, model: Any) -> None:
    """The piece in f32 against torch's convolution, at an odd size (a graph with a frozen size fails here)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, conv.in_channels, 13, 11, generator=g) * 4 - 2
    with torch.inference_mode(), torch.autocast("cpu", enabled=False):
        want = conv(x).float()
    got = torch.from_numpy(runtime.compile_model(model, "f32", 1)(x.numpy())[0])
    if got.shape != want.shape:
        raise runtime.Unsupported(f"the piece returns {tuple(got.shape)}, torch {tuple(want.shape)}")
    diff, scale = float((got - want).abs().max()), float(want.abs().max()) + 1e-6
    if not diff <= CHECK_REL * scale:
        raise runtime.Unsupported(f"the piece differs from torch by {diff:.3g} (of {scale:.3g})")


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


def _build(folder: Path, layers: list[Spatial], version: str) -> dict[int, Any]:
    """Build, check and save every piece in a temporary folder, then rename it into place (as runtime.py does).
    A layer whose piece fails is left out of the entry (it runs on torch) with one log line."""
    import openvino as ov

    try:
        tmp = folder.with_name(f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.mkdir(parents=True)
    except OSError as exc:  # a read-only cache costs a rebuild per process, nothing else
        import tempfile

        log.warning("cannot write the OpenVINO cache in %s (%s)", folder.parent, exc)
        tmp, folder = Path(tempfile.mkdtemp(prefix="impasto-ov-")), Path()
    try:
        models: dict[int, Any] = {}
        files: dict[str, dict[str, str]] = {}
        for i, op in enumerate(layers):
            try:
                conv = op.bare_conv
                ov.save_model(conv_model(conv), str(tmp / f"piece{i}.xml"), compress_to_fp16=False)
                model = runtime._read_model(tmp / f"piece{i}.xml")  # checked as later processes read it
                _check(conv, model)
            except Exception as exc:
                log.warning("layer %d (%s) does not run on OpenVINO (%s: %s); it runs on torch", i,
                            type(op).__name__, type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
                continue
            models[i] = model
            files[str(i)] = {name: sha256_file(tmp / name) for name in (f"piece{i}.xml", f"piece{i}.bin")}
        meta = {"openvino": version, "pieces_version": PIECES_VERSION, "layers": len(layers), "pieces": files}
        (tmp / "entry.json").write_text(json.dumps(meta, indent=1))
        if folder != Path():
            shutil.rmtree(folder, ignore_errors=True)  # stale or damaged: replaced
            with contextlib.suppress(OSError):  # another process put the same entry there first
                os.rename(tmp, folder)
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
    return found if found is not None else _build(folder, layers, version)


# ---- running ----


class Pieces:
    """A style net's layers on OpenVINO, for `run_staged(..., convs=pieces)`: `pieces(op)` gives a callable that
    computes `op.bare_conv` (or None: that layer runs on torch). Built and compiled on first use, so a model
    that never tiles costs nothing; a failure there leaves every layer on torch, with one log line."""

    def __init__(self, plan: Plan, sha: str, precision: str, threads: int | None = None):
        self.plan, self.sha, self.precision, self.threads = plan, sha, precision, threads
        self._compiled: dict[Spatial, Any] | None = None
        self._lock = threading.Lock()

    def compiled(self) -> dict[Spatial, Any]:
        with self._lock:
            if self._compiled is None:
                self._compiled = {}
                try:
                    models = load_pieces(self.plan, self.sha, self.precision)
                    for i, op in enumerate(spatial_layers(self.plan)):
                        if i in models:
                            precision = "f32" if op.precise else self.precision
                            self._compiled[op] = runtime.compile_model(models[i], precision, self.threads)
                except Exception as exc:
                    log.warning("the tiled path runs on torch (%s: %s)", type(exc).__name__,
                                str(exc).splitlines()[0][:200] if str(exc) else "")
                    self._compiled = {}
            return self._compiled

    def __call__(self, op: Spatial) -> Conv | None:
        compiled = self.compiled().get(op)
        return None if compiled is None else _caller(compiled)


def _caller(compiled: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """One inference request for one layer's tiles. The tensor returned shares the request's output buffer: it is
    valid until the next call (the tiler copies each tile out at once; a request per layer keeps a warm server
    from holding a tile's buffers between jobs)."""
    import openvino as ov

    request = compiled.create_infer_request()

    def conv(x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
        request.set_input_tensor(ov.Tensor(arr, shared_memory=True))
        request.infer()
        return torch.from_numpy(request.get_output_tensor(0).data)

    return conv
