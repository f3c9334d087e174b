"""Converters: foreign weight formats -> (state dict, descriptor) ready to save as an Impasto file.

Foreign pickles (.pth) are opened only with `torch.load(weights_only=True)`, which refuses anything
but tensors and plain containers, so a malicious file cannot run code."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from impasto.errors import ModelFileError
from impasto.models.info import ModelInfo


def load_pickle_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, ValueError,
            AttributeError, TypeError) as exc:
        raise ModelFileError(
            f"{path.name}: refused to load: not a plain PyTorch weights file ({str(exc).splitlines()[0]})",
            hint="only state dicts of tensors are accepted; a pickle that needs code to load is never run",
        ) from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelFileError(f"{path.name}: expected a state dict of tensors")
    return {str(k).removeprefix("module."): v for k, v in obj.items()}


def detect(path: Path) -> str:
    """'impasto' | 'ml5' | 'pytorch_examples' | 'srgan' | 'johnson_sr'."""
    if path.is_dir():
        if (path / "manifest.json").exists():
            return "ml5"
        raise ModelFileError(f"{path}: a folder without manifest.json is not an ml5 model")
    if not path.exists():
        raise ModelFileError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        return "impasto"
    state = load_pickle_weights(path)
    if "conv1.conv2d.weight" in state:
        return "pytorch_examples"
    if "block1.0.weight" in state:
        return "srgan"
    if "head.weight" in state:
        return "johnson_sr"
    raise ModelFileError(f"{path.name}: unknown network layout (first keys: {', '.join(list(state)[:4])})")


def convert(path: Path, name: str) -> tuple[dict[str, torch.Tensor], ModelInfo]:
    """Read a foreign model and describe it. The network is built once to check that the weights fit."""
    from impasto.models.fileformat import build_network

    fmt = detect(path)
    if fmt == "ml5":
        from impasto.nets.engstrom import convert_ml5, engstrom_params

        state = convert_ml5(path)
        info = ModelInfo(name=name, kind="style", arch="engstrom", params=engstrom_params(state),
                         display_name=name.replace("-", " ").replace("_", " ").title(),
                         source=f"ml5 style folder {path.name}")
    elif fmt == "pytorch_examples":
        from impasto.nets.johnson import clean_state, johnson_params

        state = clean_state(load_pickle_weights(path))
        info = ModelInfo(name=name, kind="style", arch="johnson", params=johnson_params(state),
                         display_name=name.replace("-", " ").replace("_", " ").title(),
                         source=f"pytorch/examples checkpoint {path.name}")
    elif fmt == "srgan":
        state = load_pickle_weights(path)
        info = ModelInfo(name=name, kind="sr", arch="srgan", source=f"SRGAN generator {path.name}")
    elif fmt == "johnson_sr":
        state = load_pickle_weights(path)
        info = ModelInfo(name=name, kind="sr", arch="johnson_sr", source=path.name)
    else:
        raise ModelFileError(f"{path.name}: already an Impasto model file")
    net = build_network(info, state)
    if info.kind == "sr":
        info.scale = int(net.scale)  # type: ignore[arg-type]
        info.display_name = info.display_name or f"{name} (x{info.scale})"
        info.params = {"scale": info.scale, "channels": int(net.channels)}  # type: ignore[arg-type]
    return {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}, info
