"""Converters: foreign weight formats -> (state dict, descriptor) ready to save as an Impasto file.

Containers are handled here (a `.pth` pickle, an ml5 folder); which network the tensors are is asked of the
architecture registry (`impasto.nets.registry`), so a new family needs nothing in this file. Foreign pickles
are opened only with `torch.load(weights_only=True)`, which refuses anything but tensors and plain
containers, so a malicious file cannot run code; their tensors are checked (`nets.limits`) before any of
them is converted or copied."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from impasto.errors import ModelFileError
from impasto.models.info import ModelInfo
from impasto.nets.limits import COUNTER_SUFFIX, check_state, short
from impasto.nets.registry import Arch, find_arch


def load_pickle_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except MemoryError:
        raise ModelFileError(f"{short(path.name)}: refused to load: too large to read") from None
    except Exception as exc:  # torch.load raises many types on bytes that are not a plain weights file
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ModelFileError(
            f"{short(path.name)}: refused to load: not a plain PyTorch weights file ({short(first, 160)})",
            hint="only state dicts of tensors are accepted; a pickle that needs code to load is never run",
        ) from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelFileError(f"{short(path.name)}: expected a state dict of tensors")
    return check_state({str(k).removeprefix("module."): v for k, v in obj.items()}, path.name)


def _container(path: Path) -> str:
    """'ml5' (a folder), 'impasto' (safetensors) or 'pickle', without reading the weights."""
    if path.is_dir():
        if (path / "manifest.json").exists():
            return "ml5"
        raise ModelFileError(f"{path}: a folder without manifest.json is not an ml5 model")
    if not path.exists():
        raise ModelFileError(f"{path}: no such file")
    return "impasto" if path.suffix == ".safetensors" else "pickle"


def detect(path: Path) -> str:
    """'impasto' | 'ml5' | the registry's name for a foreign layout ('pytorch_examples', 'srgan', 'johnson_sr',
    'engstrom', ...)."""
    fmt = _container(path)
    if fmt != "pickle":
        return fmt
    arch = find_arch(load_pickle_weights(path), path.name)
    return arch.format or arch.name


def _read(path: Path) -> tuple[dict[str, torch.Tensor], Arch, str]:
    """The tensors of a foreign model, its family, and where it came from (the descriptor's `source`)."""
    fmt = _container(path)
    if fmt == "impasto":
        raise ModelFileError(f"{path.name}: already an Impasto model file")
    if fmt == "ml5":
        from impasto.nets.engstrom import convert_ml5

        state = convert_ml5(path)
        return state, find_arch(state, path.name), f"ml5 style folder {path.name}"
    state = load_pickle_weights(path)
    arch = find_arch(state, path.name)
    return state, arch, f"{_SOURCES.get(arch.name, arch.what)} {path.name}".strip()


# How converted files have always described their origin (kept so that re-imports give the same descriptor).
_SOURCES = {"johnson": "pytorch/examples checkpoint", "srgan": "SRGAN generator", "johnson_sr": ""}


def convert(path: Path, name: str) -> tuple[dict[str, torch.Tensor], ModelInfo]:
    """Read a foreign model and describe it. The network is built once to check that the weights fit."""
    state, arch, source = _read(path)
    net = arch.load(state)
    spec = net.spec
    if spec.kind == "style":
        info = ModelInfo(name=name, kind="style", arch=arch.name, params=arch.hparams(state),
                         display_name=name.replace("-", " ").replace("_", " ").title(), source=source)
    else:
        info = ModelInfo(name=name, kind=spec.kind, arch=arch.name, scale=spec.scale,
                         display_name=f"{name} (x{spec.scale})", source=source,
                         params={"scale": spec.scale, "channels": spec.channels})
    return {k: v for k, v in net.state_dict().items() if not k.endswith(COUNTER_SUFFIX)}, info
