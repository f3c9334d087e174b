"""Style nets as one whole-image module that traces to a graph with dynamic height and width (for OpenVINO).

The nets' own `forward` runs their plan through the tiler's window arithmetic (`nets.blocks`), which computes
paddings and crops from Python integers: tracing would freeze those at the example's size. `PlanModule` runs
the same plan with the same weights and only constant paddings and crops. Engstrom's TF-'SAME' stride-2
convolutions pad by the parity of the size (their taps are anchored at the far end); the module runs on the
image flipped in both axes, with flipped kernels, where the anchoring is at the start and the padding constant,
and flips the result back. Everything else (reflection or zero padding, nearest upsampling, instance norm,
pointwise activations) commutes with the flip. SR nets trace as they are."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from impasto.nets.spec import spec_of


class Unsupported(Exception):
    """A network (or layer) that cannot be exported; the engine runs it on torch."""


def _weight(conv: nn.Module, flip: bool) -> nn.Parameter:
    w = conv.weight.detach().float()  # type: ignore[union-attr, operator]
    return nn.Parameter(w.flip(2, 3) if flip else w.clone(), requires_grad=False)


def _bias(conv: nn.Module) -> nn.Parameter | None:
    b = getattr(conv, "bias", None)
    return None if b is None else nn.Parameter(b.detach().float().clone(), requires_grad=False)


class _Spatial(nn.Module):
    """One spatial plan layer on a whole image, with constant paddings (see the module docstring)."""

    def __init__(self, op: nn.Module, flip: bool):
        super().__init__()
        from impasto.nets.blocks import ConvLayer, TransposeConvLayer, UpsampleConvLayer

        self.precise = bool(getattr(op, "precise", False))
        k = int(op.kernel)  # type: ignore[arg-type]
        self.up, self.crop, self.pads, self.mode = 1, (0, 0), (0, 0, 0, 0), "constant"
        self.transpose, self.stride = isinstance(op, TransposeConvLayer), 1
        conv: nn.Module
        if isinstance(op, ConvLayer):
            conv, self.stride = op.conv2d, int(op.stride)
            if op.pad_mode in ("reflect", "zero"):
                if flip and self.stride > 1:
                    raise Unsupported("a start-anchored strided conv in a flipped graph")
                p = k // 2
                self.pads, self.mode = (p, p, p, p), "reflect" if op.pad_mode == "reflect" else "constant"
            elif op.pad_mode == "same" and self.stride == 1:
                lo, hi = (k - 1) // 2, k - 1 - (k - 1) // 2
                lo, hi = (hi, lo) if flip else (lo, hi)
                self.pads = (lo, hi, lo, hi)
            elif op.pad_mode == "same" and self.stride == 2 and k % 2 and flip:
                # TF SAME, stride 2, odd k: (k-1)/2 at the far end always, (k-3)/2 or (k-1)/2 at the near end by
                # parity; flipped, the taps are anchored at the start and (k-1)/2 on both sides is exact
                self.pads = ((k - 1) // 2,) * 4
            else:
                raise Unsupported(f"conv padding {op.pad_mode!r} with stride {self.stride}")
        elif isinstance(op, UpsampleConvLayer):
            conv, self.up, p = op.conv2d, int(op.upsample), k // 2
            self.pads, self.mode = (p, p, p, p), "reflect" if op.pad_mode == "reflect" else "constant"
        elif isinstance(op, TransposeConvLayer):
            conv, self.stride = op.conv, int(op.stride)
            if k < self.stride:
                raise Unsupported("a transposed conv with kernel < stride")
            # the layer keeps outputs [0, s*n) of (n-1)*s + k; flipped, the last s*n
            extra = k - self.stride
            self.crop = (extra, 0) if flip else (0, extra)
        else:
            raise Unsupported(f"spatial layer {type(op).__name__}")
        self.weight, self.bias = _weight(conv, flip), _bias(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transpose:
            y = F.conv_transpose2d(x, self.weight, self.bias, stride=self.stride)
            lo, hi = self.crop
            if lo or hi:
                y = y[..., lo : y.shape[2] - hi, lo : y.shape[3] - hi]
            return y
        if self.up > 1:
            x = F.interpolate(x, scale_factor=self.up, mode="nearest")
        if any(self.pads):
            x = F.pad(x, self.pads, mode=self.mode)
        return F.conv2d(x, self.weight, self.bias, stride=self.stride)


class _Act(nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class PlanModule(nn.Module):
    """A style net's plan as one whole-image module that traces to a graph with dynamic height and width."""

    def __init__(self, net: nn.Module):
        super().__init__()
        from impasto.nets.blocks import Act, Add, ConvLayer, Layer, Norm, Push

        plan = spec_of(net).plan
        if plan is None:
            raise Unsupported(f"{type(net).__name__} has no plan")
        self.flip = any(isinstance(s, Layer) and isinstance(s.op, ConvLayer) and s.op.pad_mode == "same"
                        and int(s.op.stride) > 1 for s in plan)
        self.kinds: list[str] = []
        self.layers = nn.ModuleList()
        for step in plan:
            layer: nn.Module = nn.Identity()
            if isinstance(step, Layer):
                kind, layer = "spatial", _Spatial(step.op, self.flip)
            elif isinstance(step, Norm):
                kind, layer = "norm", step.norm
            elif isinstance(step, Act):
                kind, layer = "act", _Act(step.fn)
            elif isinstance(step, Push):
                kind = "push"
            elif isinstance(step, Add):
                kind = "add"
            else:
                raise Unsupported(f"plan step {type(step).__name__}")
            self.kinds.append(kind)
            self.layers.append(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        y = x.flip(2, 3) if self.flip else x
        stack: list[torch.Tensor] = []
        for kind, layer in zip(self.kinds, self.layers, strict=True):
            if kind == "push":
                stack.append(y)
            elif kind == "add":
                y = y + stack.pop()
            else:
                y = layer(y)
        if self.flip:
            y = y.flip(2, 3)
        return y[..., :h, :w]  # Engstrom's strided layers round up; the net keeps the input's size

    def precise_layers(self) -> list[int]:
        """Indices (in `layers`) that the torch path keeps in fp32 under autocast: flagged spatial layers and
        every instance norm (whose statistics are computed in fp32 there)."""
        return [i for i, (kind, layer) in enumerate(zip(self.kinds, self.layers, strict=True))
                if kind == "norm" or (kind == "spatial" and layer.precise)]


def export_module(net: nn.Module) -> nn.Module:
    """The module to convert: a style net's plan, or the network itself (SR nets trace as they are)."""
    return PlanModule(net) if spec_of(net).plan is not None else net
