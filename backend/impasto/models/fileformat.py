"""Impasto model files: safetensors weights (fp16 by default) with the descriptor in the header metadata.

Detect, load and describe are separate: `read_info` parses only the header (cheap, for listings);
`load_state` reads the tensors; `build_network` turns a state dict into a module by its `arch`."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from impasto.errors import ModelFileError
from impasto.models.info import ModelInfo

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


def load_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path.name}: corrupt or truncated weights ({exc})",
                             hint="re-import or re-download the model") from None


def build_network(info: ModelInfo, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """A module for `info.arch`, hyperparameters read from the tensor shapes."""
    from impasto.nets.engstrom import engstrom_from_state
    from impasto.nets.johnson import johnson_from_state
    from impasto.nets.sr import johnson_sr_from_state
    from impasto.nets.srgan import srgan_from_state

    if info.arch == "johnson":
        return johnson_from_state(state)
    if info.arch == "engstrom":
        return engstrom_from_state(state)
    if info.arch == "johnson_sr":
        return johnson_sr_from_state(state, bicubic_skip=bool(info.params.get("bicubic_skip", False)))
    if info.arch == "srgan":
        return srgan_from_state(state)
    raise ModelFileError(f"{info.name}: unknown architecture {info.arch!r}")
