"""Engstrom's variant of the Johnson network (lengstrom/fast-style-transfer, as used by ml5.js).

Differences from pytorch/examples: zero TF-'SAME' padding, no conv biases, transposed convolutions for
upsampling, instance norm eps 1e-3, an instance norm after the last conv, output tanh(x)*150 + 127.5.
Module names follow `TransformerNet` so both share the tiler's plan."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from impasto.errors import ModelFileError
from impasto.nets.blocks import (
    ConvLayer,
    Plan,
    TransposeConvLayer,
    keep_head_fp32,
    load_weights,
    residual_plan,
    run_plan,
    transformer_plan,
)

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

    def plan(self) -> Plan:
        return residual_plan(self)


class EngstromNet(nn.Module):
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

    def plan(self) -> Plan:
        return transformer_plan(self) + [("spatial", self.deconv3), ("norm", self.in6), ("act", _tanh150)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return run_plan(self.plan(), x)[..., :h, :w]


def build_engstrom(*, widths: tuple[int, int, int] = (32, 64, 128), res_blocks: int = 5) -> EngstromNet:
    return EngstromNet(widths=widths, res_blocks=res_blocks)


def engstrom_params(state: Mapping[str, torch.Tensor]) -> dict:
    try:
        widths = [int(state[f"conv{i}.conv2d.weight"].shape[0]) for i in (1, 2, 3)]
    except KeyError as exc:
        raise ModelFileError(f"not an Engstrom style network: missing {exc.args[0]}") from None
    blocks = len({k.split(".")[0] for k in state if k.startswith("res")})
    return {"widths": widths, "res_blocks": blocks}


def engstrom_from_state(state: Mapping[str, torch.Tensor]) -> EngstromNet:
    p = engstrom_params(state)
    net = build_engstrom(widths=tuple(p["widths"]), res_blocks=p["res_blocks"])  # type: ignore[arg-type]
    return load_weights(net, state, "Engstrom network")


def read_ml5_variables(folder: Path) -> list[np.ndarray]:
    """The deeplearn.js CheckpointDumper format: manifest.json maps `Variable`, `Variable_1`, ... to a
    file of raw little-endian float32 and a shape. Returns the arrays in numeric variable order."""
    manifest_path = folder / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{folder}: not an ml5 style folder ({exc})") from None

    def index(name: str) -> int:
        return int(name.rsplit("_", 1)[1]) if "_" in name else 0

    arrays = []
    for name in sorted(manifest, key=index):
        entry = manifest[name]
        path = (folder / entry["filename"]).resolve()
        if folder.resolve() not in path.parents:
            raise ModelFileError(f"{folder}: manifest entry {name} points outside the folder")
        shape = [int(s) for s in entry["shape"]]
        data = np.fromfile(path, dtype="<f4")
        if data.size != int(np.prod(shape)):
            raise ModelFileError(f"{path}: {data.size} values, but the manifest says shape {shape}")
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
    for k, (conv, norm) in enumerate(zip(names, norms, strict=True)):
        kernel, shift, scale = v[3 * k], v[3 * k + 1], v[3 * k + 2]
        if conv.startswith("deconv") and conv != "deconv3":
            # TF conv2d_transpose filter [kh, kw, out, in] -> torch ConvTranspose2d (in, out, kh, kw)
            state[f"{conv}.conv.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
        else:
            # TF conv2d filter [kh, kw, in, out] (HWIO) -> torch (out, in, kh, kw)
            state[f"{conv}.conv2d.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
        state[f"{norm}.weight"] = torch.from_numpy(scale.copy())
        state[f"{norm}.bias"] = torch.from_numpy(shift.copy())
    return state
