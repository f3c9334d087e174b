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
from impasto.nets.blocks import load_weights


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


class SRGANGenerator(nn.Module):
    arch = "srgan"

    def __init__(self, scale: int = 4, channels: int = 64, blocks: int = 5):
        super().__init__()
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / 255.0
        b1 = self.block1(x)
        y = b1
        for i in range(self.n_res + 1):
            y = getattr(self, f"block{i + 2}")(y)
        y = getattr(self, f"block{self.n_res + 3}")(b1 + y)
        return (torch.tanh(y) + 1.0) * 127.5


def srgan_from_state(state: Mapping[str, torch.Tensor]) -> SRGANGenerator:
    try:
        channels = int(state["block1.0.weight"].shape[0])
    except KeyError:
        raise ModelFileError("not an SRGAN generator: missing block1.0.weight") from None
    numbers = sorted({int(m.group(1)) for k in state if (m := re.match(r"block(\d+)\.", k))})
    last = numbers[-1]
    ups = len({k.split(".")[1] for k in state if k.startswith(f"block{last}.") and ".conv." in k})
    net = SRGANGenerator(scale=2**ups, channels=channels, blocks=last - 3)
    return load_weights(net, state, "SRGAN")
