"""The super-resolution networks of Johnson et al. (2016), supplementary Table 2.

x4 is c9s1-64, R64 x4, u64, u64, c9s1-3; x8 adds a third u64 and x2 has one. Each `u64` is a nearest
x2 resize followed by a 3x3 conv (resize-convolution instead of fractionally-strided convolution, so no
checkerboard). Residual blocks use batch norm as in the paper; at inference it is a per-channel affine
map, so halo tiling is exact. Input LR RGB 0-255, output RGB 0-255 (tanh-scaled)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from impasto.nets.limits import MAX_BLOCKS, MAX_CHANNELS, MAX_UPSAMPLE_STAGES, bounded, dims
from impasto.nets.registry import Arch, register
from impasto.nets.spec import NetSpec, Network


class _Res(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, padding_mode="reflect")
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, padding_mode="reflect")
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))


class _Up(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, padding_mode="reflect")
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))))


class SRNet(Network):
    arch = "johnson_sr"

    def __init__(self, scale: int = 4, channels: int = 64, blocks: int = 4, bicubic_skip: bool = False):
        super().__init__()
        if scale not in (2, 4, 8):
            raise ValueError(f"scale must be 2, 4 or 8, got {scale}")
        self.scale, self.channels, self.blocks, self.bicubic_skip = scale, channels, blocks, bicubic_skip
        self.head = nn.Conv2d(3, channels, 9, padding=4, padding_mode="reflect")
        self.head_bn = nn.BatchNorm2d(channels)
        self.body = nn.Sequential(*[_Res(channels) for _ in range(blocks)])
        self.up = nn.Sequential(*[_Up(channels) for _ in range(int(math.log2(scale)))])
        self.tail = nn.Conv2d(channels, 3, 9, padding=4, padding_mode="reflect")
        # receptive-field radius in LR pixels, rounded up: what a tile's halo must cover
        self.halo = 4 + 2 * blocks + 2 + math.ceil(4 / scale) + 2

    @property
    def spec(self) -> NetSpec:
        return NetSpec(kind="sr", scale=self.scale, multiple=1, halo=self.halo, channels=self.channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, h, w) 0-255 -> (B, 3, h*s, w*s)
        y = F.relu(self.head_bn(self.head(x / 127.5 - 1.0)))
        y = self.tail(self.up(self.body(y)))
        if self.bicubic_skip:
            # optional: learn the residual over bicubic (our deviation, off in the paper's nets)
            base = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
            return base + y * 127.5
        return (torch.tanh(y) + 1.0) * 127.5


def build_johnson_sr(*, scale: int = 4, channels: int = 64, blocks: int = 4, bicubic_skip: bool = False) -> SRNet:
    return SRNet(scale=scale, channels=channels, blocks=blocks, bicubic_skip=bicubic_skip)


_WHAT = "an Impasto super-resolution network"


def _indices(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    """How many distinct `prefix.N.` groups the keys hold (residual blocks, upsampling stages)."""
    return len({k.split(".")[1] for k in state if k.startswith(prefix + ".") and k.count(".") >= 2})


def johnson_sr_params(state: Mapping[str, torch.Tensor]) -> dict:
    """Width, depth and scale from the shapes and keys; `bicubic_skip` only the descriptor can tell."""
    channels = bounded(dims(state, "head.weight", 4, _WHAT)[0], 1, MAX_CHANNELS, f"{_WHAT}: the width")
    blocks = bounded(_indices(state, "body"), 0, MAX_BLOCKS, f"{_WHAT}: the number of residual blocks")
    ups = bounded(_indices(state, "up"), 1, MAX_UPSAMPLE_STAGES, f"{_WHAT}: the number of x2 upsampling stages (up.N)")
    return {"scale": 2**ups, "channels": channels, "blocks": blocks, "bicubic_skip": False}


ARCH = register(Arch(
    name="johnson_sr", kind="sr", what=_WHAT, detect=lambda keys: "head.weight" in keys,
    read_hparams=johnson_sr_params, build=build_johnson_sr, options={"bicubic_skip": bool},
))
