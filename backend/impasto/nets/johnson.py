"""The style transformation network of Johnson et al. (2016), in the pytorch/examples form.

Reflection padding, instance norm, nearest-upsample + conv, output in 0-255. The state-dict keys are
those of pytorch/examples `fast_neural_style`, so its models (candy.pth, mosaic.pth, ...) load unchanged;
widths are read back from tensor shapes, so reduced-width checkpoints load without a config."""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from impasto.nets.blocks import (
    ConvLayer,
    UpsampleConvLayer,
    keep_head_fp32,
    layer,
    run_plan,
    transformer_plan,
)
from impasto.nets.limits import MAX_BLOCKS, MAX_CHANNELS, bounded, dims
from impasto.nets.registry import Arch, register
from impasto.nets.spec import NetSpec, Network


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3, 1)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, 3, 1)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)


class TransformerNet(Network):
    """Image transformation network (Johnson et al. 2016, supplementary Table 1), pytorch/examples form.
    Input and output: RGB, 0-255, (B, 3, H, W)."""

    arch = "johnson"

    def __init__(self, widths: tuple[int, int, int] = (32, 64, 128), res_blocks: int = 5):
        super().__init__()
        a, b, c = widths
        self.widths, self.res_blocks = widths, res_blocks
        self.conv1 = ConvLayer(3, a, 9, 1)
        self.in1 = nn.InstanceNorm2d(a, affine=True)
        self.conv2 = ConvLayer(a, b, 3, 2)
        self.in2 = nn.InstanceNorm2d(b, affine=True)
        self.conv3 = ConvLayer(b, c, 3, 2)
        self.in3 = nn.InstanceNorm2d(c, affine=True)
        for i in range(1, res_blocks + 1):
            self.add_module(f"res{i}", ResidualBlock(c))
        self.deconv1 = UpsampleConvLayer(c, b, 3, upsample=2)
        self.in4 = nn.InstanceNorm2d(b, affine=True)
        self.deconv2 = UpsampleConvLayer(b, a, 3, upsample=2)
        self.in5 = nn.InstanceNorm2d(a, affine=True)
        self.deconv3 = ConvLayer(a, 3, 9, 1)
        keep_head_fp32(self)
        self._plan = tuple(transformer_plan(self) + [layer(self.deconv3)])

    # The input is reflection-padded to a multiple of this so that the output has the input's size.
    multiple = 4

    @property
    def spec(self) -> NetSpec:
        return NetSpec(kind="style", scale=1, multiple=self.multiple, halo=0, channels=max(self.widths),
                       plan=self._plan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_plan(self._plan, x)


_RUNNING_STATS = re.compile(r"in\d+\.running_(mean|var)$|\.num_batches_tracked$")
_RES = re.compile(r"res\d+\.")
_WHAT = "a pytorch/examples style network"


def build_johnson(*, widths: tuple[int, int, int] = (32, 64, 128), res_blocks: int = 5) -> TransformerNet:
    return TransformerNet(widths=widths, res_blocks=res_blocks)


def johnson_params(state: Mapping[str, torch.Tensor]) -> dict:
    """Read the hyperparameters back from tensor shapes (no config needed), within bounds."""
    what = _WHAT
    widths = [bounded(dims(state, f"conv{i}.conv2d.weight", 4, what)[0], 1, MAX_CHANNELS, f"{what}: width {i}")
              for i in (1, 2, 3)]
    blocks = len({k.split(".")[0] for k in state if _RES.match(k)})
    return {"widths": widths, "res_blocks": bounded(blocks, 0, MAX_BLOCKS, f"{what}: the number of residual blocks")}


def clean_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the InstanceNorm running stats that old PyTorch versions saved (the layers never use them)."""
    return {k: v for k, v in state.items() if not _RUNNING_STATS.search(k)}


ARCH = register(Arch(
    name="johnson", kind="style", what=_WHAT, format="pytorch_examples",
    # Engstrom's nets share the conv names but upsample with transposed convs (`deconv1.conv`)
    detect=lambda keys: "conv1.conv2d.weight" in keys and "deconv1.conv.weight" not in keys,
    read_hparams=johnson_params, clean=clean_state,
    build=lambda widths, res_blocks: build_johnson(widths=tuple(widths), res_blocks=res_blocks),
))


def johnson_from_state(state: Mapping[str, torch.Tensor]) -> TransformerNet:
    net = ARCH.load(state)
    assert isinstance(net, TransformerNet)
    return net
