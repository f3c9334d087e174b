"""Impasto model files: safetensors weights (fp16 by default) with the descriptor in the header metadata.

Detect, load and describe are separate: `read_info` parses only the header (cheap, for listings);
`load_state` checks the header's tensor list (count, float dtypes, shapes) and then reads the tensors;
`build_network` turns a state dict into a module through the architecture registry (`impasto.nets.registry`)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from impasto.errors import ModelFileError
from impasto.models.info import ModelInfo
from impasto.nets.limits import COUNTER_SUFFIX, MAX_TENSORS, bounded, check_shape, check_state, echo, short
from impasto.nets.registry import get_arch
from impasto.nets.spec import Network

_META_KEY = "impasto"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_model(
    path: Path, state: Mapping[str, torch.Tensor], info: ModelInfo, dtype: torch.dtype = torch.float16
) -> Path:
    """Write `state` (floating tensors cast to `dtype`) and the descriptor to `path`."""
    tensors = {k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous().cpu()
               for k, v in state.items()}
    meta = {_META_KEY: json.dumps({k: v for k, v in info.to_json().items() if k not in ("sha256", "bundled")})}
    if info.thumbnail_png:
        meta["thumbnail_png"] = base64.b64encode(info.thumbnail_png).decode()
    if info.style_image_jpeg:
        meta["style_image_jpeg"] = base64.b64encode(info.style_image_jpeg).decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def read_info(path: Path, *, bundled: bool = False) -> ModelInfo:
    """The descriptor of an Impasto model file, from its header only."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path.name}: not a readable safetensors file ({exc})",
                             hint="re-import or re-download the model") from None
    if _META_KEY not in meta:
        raise ModelFileError(f"{path.name}: safetensors file without Impasto metadata",
                             hint="import foreign weights with `impasto models import PATH`")
    try:
        d = json.loads(meta[_META_KEY])
        if not isinstance(d, dict):
            raise TypeError(f"the descriptor is a JSON {type(d).__name__}, not an object")
        d.pop("has_thumbnail", None)
        d.pop("has_style_image", None)
        info = ModelInfo(**d)
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{path.name}: malformed metadata ({exc})") from None
    if info.kind not in ("style", "sr"):
        raise ModelFileError(f"{path.name}: unknown model kind {info.kind!r}")
    for key, attr in (("thumbnail_png", "thumbnail_png"), ("style_image_jpeg", "style_image_jpeg")):
        if key in meta:
            try:
                setattr(info, attr, base64.b64decode(meta[key], validate=True))
            except ValueError:
                raise ModelFileError(f"{path.name}: malformed {key}") from None
    info.path, info.bundled = path, bundled
    return info


# safetensors dtype names that hold network weights; integer or boolean tensors are refused
_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}


def _check_header(path: Path) -> None:
    """Refuse a file whose tensor list is too long, not floating point, or too large, before reading it."""
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
        bounded(len(keys), 1, MAX_TENSORS, f"{path.name}: the number of tensors")
        for key in keys:
            part = f.get_slice(key)
            dtype = part.get_dtype()
            if dtype not in _FLOAT_DTYPES and not key.endswith(COUNTER_SUFFIX):
                raise ModelFileError(f"{path.name}: {echo(key)} holds {dtype} values; network weights are "
                                     "floating point", hint="re-import the original weights")
            check_shape(list(part.get_shape()), f"{path.name}: {echo(key)}")


def load_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        _check_header(path)
        return check_state(load_file(str(path), device="cpu"), path.name)
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ModelFileError(f"{short(path.name)}: corrupt or truncated weights ({short(first, 160)})",
                             hint="re-import or re-download the model") from None


def build_network(info: ModelInfo, state: Mapping[str, torch.Tensor]) -> Network:
    """A network for `info.arch` (hyperparameters read from the tensor shapes) that matches the descriptor."""
    net = get_arch(info.arch, info.name).load(state, info.params if isinstance(info.params, dict) else None)
    spec = net.spec
    if spec.kind != info.kind or (spec.kind == "sr" and spec.scale != info.scale):
        what = f"{info.kind} x{info.scale}" if info.kind == "sr" else info.kind
        raise ModelFileError(f"{echo(info.name)}: the descriptor says {echo(what)} but the weights are a "
                             f"{spec.kind} network" + (f" x{spec.scale}" if spec.kind == "sr" else ""),
                             hint="re-import the original weights")
    return net
