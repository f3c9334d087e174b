"""The style transformation network of Johnson et al. (2016), in the pytorch/examples form.

Reflection padding, instance norm, nearest-upsample + conv, output in 0-255. The state-dict keys are
those of pytorch/examples `fast_neural_style`, so its models (candy.pth, mosaic.pth, ...) load unchanged;
widths are read back from tensor shapes, so reduced-width checkpoints load without a config."""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from impasto.errors import ModelFileError
from impasto.nets.blocks import (
    ConvLayer,
    Plan,
    UpsampleConvLayer,
    keep_head_fp32,
    load_weights,
    residual_plan,
    run_plan,
    transformer_plan,
)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3, 1)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, 3, 1)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)

    def plan(self) -> Plan:
        return residual_plan(self)


class TransformerNet(nn.Module):
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

    # The input is reflection-padded to a multiple of this so that the output has the input's size.
    multiple = 4

    def plan(self) -> Plan:
        return transformer_plan(self) + [("spatial", self.deconv3)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_plan(self.plan(), x)


_RUNNING_STATS = re.compile(r"in\d+\.running_(mean|var)$|\.num_batches_tracked$")


def build_johnson(*, widths: tuple[int, int, int] = (32, 64, 128), res_blocks: int = 5) -> TransformerNet:
    return TransformerNet(widths=widths, res_blocks=res_blocks)


def johnson_params(state: Mapping[str, torch.Tensor]) -> dict:
    """Read the hyperparameters back from tensor shapes (no config needed)."""
    try:
        a = int(state["conv1.conv2d.weight"].shape[0])
        b = int(state["conv2.conv2d.weight"].shape[0])
        c = int(state["conv3.conv2d.weight"].shape[0])
    except KeyError as exc:
        raise ModelFileError(f"not a pytorch/examples style network: missing {exc.args[0]}") from None
    blocks = len({k.split(".")[0] for k in state if re.match(r"res\d+\.", k)})
    return {"widths": [a, b, c], "res_blocks": blocks}


def clean_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the InstanceNorm running stats that old PyTorch versions saved (the layers never use them)."""
    return {k: v for k, v in state.items() if not _RUNNING_STATS.search(k)}


def johnson_from_state(state: Mapping[str, torch.Tensor]) -> TransformerNet:
    state = clean_state(state)
    p = johnson_params(state)
    net = build_johnson(widths=tuple(p["widths"]), res_blocks=p["res_blocks"])  # type: ignore[arg-type]
    return load_weights(net, state, "style network")
