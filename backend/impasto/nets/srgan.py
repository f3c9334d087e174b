"""The SRGAN generator (Ledig et al. 2017) in the layout of leftthomas/SRGAN, for its x2/x4/x8 weights.

9x9 conv + PReLU; 5 residual blocks (conv-BN-PReLU-conv-BN); conv + PReLU; a global skip from the first
block; log2(scale) x [conv 64->256, PixelShuffle(2), PReLU]; 9x9 conv to 3; (tanh + 1) / 2 on [0, 1]
input. Wrapped here to take and return RGB 0-255."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch
from torch import nn

from impasto.errors import ModelFileError
from impasto.nets.limits import MAX_BLOCKS, MAX_CHANNELS, MAX_UPSAMPLE_STAGES, bounded, dims
from impasto.nets.registry import Arch, register
from impasto.nets.spec import NetSpec, Network


class _Res(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(c)
        self.prelu = nn.PReLU()
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(x)))))


class _Up(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.prelu = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.shuffle(self.conv(x)))


class SRGANGenerator(Network):
    arch = "srgan"

    def __init__(self, scale: int = 4, channels: int = 64, blocks: int = 5):
        super().__init__()
        if scale not in (2, 4, 8):
            raise ValueError(f"scale must be 2, 4 or 8, got {scale}")
        self.scale, self.channels, self.blocks = scale, channels, blocks
        self.block1 = nn.Sequential(nn.Conv2d(3, channels, 9, padding=4), nn.PReLU())
        for i in range(blocks):
            self.add_module(f"block{i + 2}", _Res(channels))
        self.n_res = blocks
        tail = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.PReLU())
        self.add_module(f"block{blocks + 2}", tail)
        ups: list[nn.Module] = [_Up(channels) for _ in range(int(math.log2(scale)))]
        ups.append(nn.Conv2d(channels, 3, 9, padding=4))
        self.add_module(f"block{blocks + 3}", nn.Sequential(*ups))
        self.halo = 4 + 2 * blocks + 1 + 2 + math.ceil(4 / scale) + 1

    @property
    def spec(self) -> NetSpec:
        return NetSpec(kind="sr", scale=self.scale, multiple=1, halo=self.halo, channels=self.channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / 255.0
        b1 = self.block1(x)
        y = b1
        for i in range(self.n_res + 1):
            y = getattr(self, f"block{i + 2}")(y)
        y = getattr(self, f"block{self.n_res + 3}")(b1 + y)
        return (torch.tanh(y) + 1.0) * 127.5


_WHAT = "an SRGAN generator"
_BLOCK = re.compile(r"block(\d{1,6})\.")


def srgan_params(state: Mapping[str, torch.Tensor]) -> dict:
    """Width from the first conv; depth from the highest block number (block1, residual blocks, the tail
    conv, then the upsampler); scale from the upsampler's conv stages."""
    channels = bounded(dims(state, "block1.0.weight", 4, _WHAT)[0], 1, MAX_CHANNELS, f"{_WHAT}: the width")
    numbers = {int(m.group(1)) for k in state if (m := _BLOCK.match(k))}
    if any(_BLOCK.match(k) is None and k.startswith("block") for k in state):
        raise ModelFileError(f"{_WHAT}: a block key without a short block number",
                             hint="the file is damaged or not an SRGAN generator")
    last = max(numbers)
    blocks = bounded(last - 3, 1, MAX_BLOCKS, f"{_WHAT}: the number of residual blocks")
    ups = len({k.split(".")[1] for k in state if k.startswith(f"block{last}.") and ".conv." in k})
    ups = bounded(ups, 1, MAX_UPSAMPLE_STAGES, f"{_WHAT}: the number of x2 upsampling stages")
    return {"scale": 2**ups, "channels": channels, "blocks": blocks}


ARCH = register(Arch(
    name="srgan", kind="sr", what=_WHAT, detect=lambda keys: "block1.0.weight" in keys,
    read_hparams=srgan_params, build=SRGANGenerator,
))


def srgan_from_state(state: Mapping[str, torch.Tensor]) -> SRGANGenerator:
    net = ARCH.load(state)
    assert isinstance(net, SRGANGenerator)
    return net
