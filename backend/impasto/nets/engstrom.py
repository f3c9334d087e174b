"""Engstrom's variant of the Johnson network (lengstrom/fast-style-transfer, as used by ml5.js).

Differences from pytorch/examples: zero TF-'SAME' padding, no conv biases, transposed convolutions for
upsampling, instance norm eps 1e-3, an instance norm after the last conv, output tanh(x)*150 + 127.5.
Module names follow `TransformerNet` so both share the tiler's plan."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from impasto.errors import ModelFileError
from impasto.nets.blocks import (
    Act,
    ConvLayer,
    TransposeConvLayer,
    keep_head_fp32,
    layer,
    norm,
    run_plan,
    transformer_plan,
)
from impasto.nets.limits import MAX_BLOCKS, MAX_CHANNELS, MAX_TENSORS, bounded, check_shape, dims, echo
from impasto.nets.registry import Arch, register
from impasto.nets.spec import NetSpec, Network

EPS = 1e-3


def _tanh150(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x) * 150.0 + 127.5


class _Res(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = ConvLayer(c, c, 3, 1, pad="same", bias=False)
        self.in1 = nn.InstanceNorm2d(c, eps=EPS, affine=True)
        self.conv2 = ConvLayer(c, c, 3, 1, pad="same", bias=False)
        self.in2 = nn.InstanceNorm2d(c, eps=EPS, affine=True)


class EngstromNet(Network):
    """Input RGB 0-255 (no mean subtraction), output RGB in [-22.5, 277.5] before clamping."""

    arch = "engstrom"
    multiple = 1  # TF 'SAME' handles any size; the output is cropped back to the input size

    def __init__(self, widths: tuple[int, int, int] = (32, 64, 128), res_blocks: int = 5):
        super().__init__()
        a, b, c = widths
        self.widths, self.res_blocks = widths, res_blocks
        self.conv1 = ConvLayer(3, a, 9, 1, pad="same", bias=False)
        self.in1 = nn.InstanceNorm2d(a, eps=EPS, affine=True)
        self.conv2 = ConvLayer(a, b, 3, 2, pad="same", bias=False)
        self.in2 = nn.InstanceNorm2d(b, eps=EPS, affine=True)
        self.conv3 = ConvLayer(b, c, 3, 2, pad="same", bias=False)
        self.in3 = nn.InstanceNorm2d(c, eps=EPS, affine=True)
        for i in range(1, res_blocks + 1):
            self.add_module(f"res{i}", _Res(c))
        self.deconv1 = TransposeConvLayer(c, b)
        self.in4 = nn.InstanceNorm2d(b, eps=EPS, affine=True)
        self.deconv2 = TransposeConvLayer(b, a)
        self.in5 = nn.InstanceNorm2d(a, eps=EPS, affine=True)
        self.deconv3 = ConvLayer(a, 3, 9, 1, pad="same", bias=False)
        keep_head_fp32(self)
        self.in6 = nn.InstanceNorm2d(3, eps=EPS, affine=True)
        self._plan = tuple(transformer_plan(self) + [layer(self.deconv3), norm(self.in6), Act(_tanh150)])

    @property
    def spec(self) -> NetSpec:
        return NetSpec(kind="style", scale=1, multiple=self.multiple, halo=0, channels=max(self.widths),
                       plan=self._plan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return run_plan(self._plan, x)[..., :h, :w]


def build_engstrom(*, widths: tuple[int, int, int] = (32, 64, 128), res_blocks: int = 5) -> EngstromNet:
    return EngstromNet(widths=widths, res_blocks=res_blocks)


_WHAT = "an Engstrom (ml5.js) style network"
_RES = re.compile(r"res\d+\.")


def engstrom_params(state: Mapping[str, torch.Tensor]) -> dict:
    widths = [bounded(dims(state, f"conv{i}.conv2d.weight", 4, _WHAT)[0], 1, MAX_CHANNELS, f"{_WHAT}: width {i}")
              for i in (1, 2, 3)]
    blocks = len({k.split(".")[0] for k in state if _RES.match(k)})
    return {"widths": widths, "res_blocks": bounded(blocks, 0, MAX_BLOCKS, f"{_WHAT}: the number of residual blocks")}


ARCH = register(Arch(
    name="engstrom", kind="style", what=_WHAT,
    detect=lambda keys: "conv1.conv2d.weight" in keys and "deconv1.conv.weight" in keys,
    read_hparams=engstrom_params,
    build=lambda widths, res_blocks: build_engstrom(widths=tuple(widths), res_blocks=res_blocks),
))


def engstrom_from_state(state: Mapping[str, torch.Tensor]) -> EngstromNet:
    net = ARCH.load(state)
    assert isinstance(net, EngstromNet)
    return net


_INDEX = re.compile(r"[^_]*|.*_(\d{1,6})")  # `Variable` is 0, `Variable_12` is 12


def _ml5_entry(folder: Path, name: str, entry: object) -> tuple[Path, tuple[int, ...]]:
    """The file and shape of one manifest entry, checked before anything is read."""
    if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str):
        raise ModelFileError(f"{folder}: manifest entry {echo(name)} has no file name",
                             hint="the folder is not an ml5 style model, or its manifest.json is damaged")
    try:
        path = (folder / entry["filename"]).resolve()
    except (OSError, ValueError):
        path = folder
    if folder.resolve() not in path.parents:
        raise ModelFileError(f"{folder}: manifest entry {echo(name)} points outside the folder")
    return path, check_shape(entry.get("shape"), f"{folder}: manifest entry {echo(name)}")


def read_ml5_variables(folder: Path) -> list[np.ndarray]:
    """The deeplearn.js CheckpointDumper format: manifest.json maps `Variable`, `Variable_1`, ... to a
    file of raw little-endian float32 and a shape. Returns the arrays in numeric variable order."""
    manifest_path = folder / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{folder}: not an ml5 style folder ({exc})") from None
    if not isinstance(manifest, dict):
        raise ModelFileError(f"{folder}: manifest.json holds a {type(manifest).__name__}, not a table of variables")
    bounded(len(manifest), 1, MAX_TENSORS, f"{folder}: the number of variables")
    order: list[tuple[int, str]] = []
    for name in manifest:
        m = _INDEX.fullmatch(name)
        if m is None:
            raise ModelFileError(f"{folder}: variable {echo(name)} in manifest.json has no number")
        order.append((int(m.group(1) or 0), name))
    arrays = []
    for _, name in sorted(order, key=lambda t: t[0]):
        path, shape = _ml5_entry(folder, name, manifest[name])
        count = math.prod(shape)
        try:
            size = path.stat().st_size  # checked before reading: the manifest decides how much we read
            if size != 4 * count:
                raise ModelFileError(f"{path}: {size // 4} values, but the manifest says shape {list(shape)}")
            data = np.fromfile(path, dtype="<f4")
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"{folder}: cannot read variable {echo(name)} ({exc})") from None
        arrays.append(data.reshape(shape))
    return arrays


def convert_ml5(folder: Path) -> dict[str, torch.Tensor]:
    """ml5 variables -> EngstromNet state dict. Each conv layer is (kernel, IN shift, IN scale)."""
    v = read_ml5_variables(Path(folder))
    if len(v) % 3:
        raise ModelFileError(f"{folder}: {len(v)} variables; expected (kernel, shift, scale) triples")
    names = ["conv1", "conv2", "conv3"]
    n_res = (len(v) // 3 - 6) // 2
    for i in range(1, n_res + 1):
        names += [f"res{i}.conv1", f"res{i}.conv2"]
    names += ["deconv1", "deconv2", "deconv3"]
    if len(names) * 3 != len(v):
        raise ModelFileError(f"{folder}: unexpected number of variables ({len(v)})")
    norms = ["in1", "in2", "in3"] + [f"res{i}.in{j}" for i in range(1, n_res + 1) for j in (1, 2)]
    norms += ["in4", "in5", "in6"]
    state: dict[str, torch.Tensor] = {}
    for k, (conv, inorm) in enumerate(zip(names, norms, strict=True)):
        kernel, shift, scale = v[3 * k], v[3 * k + 1], v[3 * k + 2]
        if kernel.ndim != 4 or shift.ndim != 1 or scale.ndim != 1:
            raise ModelFileError(f"{folder}: layer {conv} has shapes {kernel.shape}, {shift.shape}, {scale.shape}; "
                                 "expected a 4-D kernel and two vectors")
        if conv.startswith("deconv") and conv != "deconv3":
            # TF conv2d_transpose filter [kh, kw, out, in] -> torch ConvTranspose2d (in, out, kh, kw)
            state[f"{conv}.conv.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
        else:
            # TF conv2d filter [kh, kw, in, out] (HWIO) -> torch (out, in, kh, kw)
            state[f"{conv}.conv2d.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
        state[f"{inorm}.weight"] = torch.from_numpy(scale.copy())
        state[f"{inorm}.bias"] = torch.from_numpy(shift.copy())
    return state
