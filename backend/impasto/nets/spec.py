"""The one network contract: what the engine and the tiler may know about a network, without looking inside.

Every family's module subclasses `Network` and answers `spec` with a `NetSpec`. The tiler reads nothing
else (no attribute probing), so a new family only has to describe itself correctly here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from impasto.nets.blocks import Plan

Kind = Literal["style", "sr"]


@dataclass(frozen=True)
class NetSpec:
    """How to run a network on images of any size.

    - `kind`: "style" (same-size output) or "sr" (super-resolution, output `scale` times the input).
    - `scale`: output side / input side.
    - `multiple`: the input is padded up to a multiple of this (and the output cropped back).
    - `halo`: receptive-field radius in input pixels, rounded up: how far past its tile each window reads
      when a local net is run in windows (0 for plan nets, which tile exactly layer by layer).
    - `channels`: widest feature map; the working-memory estimate of a local net scales with it.
    - `plan`: the steps of a net with instance norm (whole-image statistics), run layer by layer when tiled;
      None for a local net (every output pixel depends on a bounded neighbourhood), run in halo windows.
    """

    kind: Kind
    scale: int
    multiple: int
    halo: int
    channels: int
    plan: Plan | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("style", "sr"):
            raise ValueError(f"kind must be 'style' or 'sr', got {self.kind!r}")
        if self.scale < 1 or self.multiple < 1 or self.halo < 0 or self.channels < 1:
            raise ValueError(f"invalid network description {self}")
        if self.kind == "style" and (self.plan is None or self.scale != 1):
            raise ValueError("a style net keeps the image size and is described by a plan")
        if self.plan is None and self.halo == 0:
            raise ValueError("a local net needs the halo its windows read")


class Network(nn.Module):
    """Base of every network family the engine runs: a module that describes itself."""

    arch: str = ""  # the registry name, as stored in a model file's descriptor (`ModelInfo.arch`)

    @property
    def spec(self) -> NetSpec:
        raise NotImplementedError


def spec_of(net: nn.Module) -> NetSpec:
    """The description of `net`; a module that is not one of ours is a programming error."""
    if not isinstance(net, Network):
        raise TypeError(f"{type(net).__name__} is not an impasto network (it has no NetSpec)")
    return net.spec
