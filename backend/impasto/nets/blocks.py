"""Building blocks shared by the style and super-resolution networks.

Every spatial layer pads explicitly and convolves with padding 0, and can compute any window of its
output from the matching window of its input (`window`). A network is a *plan*: a flat tuple of typed
steps (`Layer`, `Norm`, `Act`, `Push`/`Add` for skips). `run_plan` executes a plan on a whole tensor; the
tiler executes the same plan window by window, so both paths share one definition."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

Conv = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Window:
    """How to compute output rows [o0, o1) of a spatial layer along one axis: read input rows [i0, i1),
    pad by (pad_lo, pad_hi) with the layer's own border rule, run the layer, keep rows from `crop`."""

    i0: int
    i1: int
    pad_lo: int
    pad_hi: int
    crop: int


def _clip(start: int, end: int, n: int) -> tuple[int, int, int, int]:
    i0, i1 = max(start, 0), min(end, n)
    return i0, i1, i0 - start, end - i1


class Spatial(nn.Module):
    """A layer whose output at each position depends on a bounded input neighbourhood."""

    up: int = 1  # output/input size ratio numerator (upsampling)
    precise: bool = False  # run in fp32 even under autocast (cheap layers whose reduced-precision error is amplified)
    down: int = 1  # output/input size ratio denominator (stride)
    kernel: int = 1  # kernel side (the tiler's per-tile memory estimate)

    @property
    def channels(self) -> tuple[int, int]:
        """(input, output) channels."""
        raise NotImplementedError

    def out_size(self, n: int) -> int:
        raise NotImplementedError

    def window(self, o0: int, o1: int, n: int) -> Window:
        raise NotImplementedError

    def run(self, x: torch.Tensor, wh: Window, ww: Window, oh: int, ow: int, conv: Conv | None = None) -> torch.Tensor:
        """Output rows/columns described by (wh, ww) from the input window `x`. `conv` replaces the layer's
        bare convolution (`bare_conv`: no padding, the layer's stride) with the same result computed elsewhere
        (the tiler's OpenVINO pieces); the padding and cropping around it stay here."""
        raise NotImplementedError

    @property
    def bare_conv(self) -> nn.Conv2d | nn.ConvTranspose2d:
        """The convolution inside `run`, applied with padding 0 to the padded (or upsampled) window."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        oh, ow = self.out_size(h), self.out_size(w)
        return self.run(x, self.window(0, oh, h), self.window(0, ow, w), oh, ow)


def _pad(x: torch.Tensor, wh: Window, ww: Window, mode: str) -> torch.Tensor:
    pads = (ww.pad_lo, ww.pad_hi, wh.pad_lo, wh.pad_hi)
    if not any(pads):
        return x
    return F.pad(x, pads, mode="constant" if mode == "zero" else mode)


class ConvLayer(Spatial):
    """Conv with explicit border padding: `reflect` (pytorch/examples), `zero`, or TF `same` (zero padding
    split as TensorFlow does, which for stride 2 on an even size pads only the bottom/right)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, pad: str = "reflect", bias: bool = True):
        super().__init__()
        self.kernel, self.stride, self.pad_mode = kernel, stride, pad
        self.down = stride
        self.conv2d = nn.Conv2d(cin, cout, kernel, stride, bias=bias)

    @property
    def channels(self) -> tuple[int, int]:
        return self.conv2d.in_channels, self.conv2d.out_channels

    def _pads(self, n: int) -> tuple[int, int]:
        if self.pad_mode == "same":
            total = max((-(-n // self.stride) - 1) * self.stride + self.kernel - n, 0)
            return total // 2, total - total // 2
        p = self.kernel // 2
        return p, p

    def out_size(self, n: int) -> int:
        lo, hi = self._pads(n)
        return (n + lo + hi - self.kernel) // self.stride + 1

    def window(self, o0: int, o1: int, n: int) -> Window:
        lo, _ = self._pads(n)
        i0, i1, plo, phi = _clip(o0 * self.stride - lo, (o1 - 1) * self.stride + self.kernel - lo, n)
        return Window(i0, i1, plo, phi, 0)

    @property
    def bare_conv(self) -> nn.Conv2d:
        return self.conv2d

    def run(self, x: torch.Tensor, wh: Window, ww: Window, oh: int, ow: int, conv: Conv | None = None) -> torch.Tensor:
        mode = "reflect" if self.pad_mode == "reflect" else "zero"
        return (conv or self.conv2d)(_pad(x, wh, ww, mode))


class UpsampleConvLayer(Spatial):
    """Nearest-neighbour upsampling then a reflection-padded conv (pytorch/examples; Odena et al. 2016:
    resize-convolution avoids the checkerboard of transposed convolutions)."""

    def __init__(self, cin: int, cout: int, kernel: int, upsample: int = 2, pad: str = "reflect"):
        super().__init__()
        self.kernel, self.upsample, self.pad_mode = kernel, upsample, pad
        self.up = upsample
        self.conv2d = nn.Conv2d(cin, cout, kernel, 1)

    @property
    def channels(self) -> tuple[int, int]:
        return self.conv2d.in_channels, self.conv2d.out_channels

    def out_size(self, n: int) -> int:
        return n * self.upsample

    def window(self, o0: int, o1: int, n: int) -> Window:
        p, u = self.kernel // 2, self.upsample
        a, b, plo, phi = _clip(o0 - p, o1 - 1 + self.kernel - p, n * u)
        i0, i1 = a // u, -(-b // u)
        # crop = offset of `a` inside the upsampled source window; stored in Window.crop
        return Window(i0, i1, plo, phi, a - i0 * u)

    @property
    def bare_conv(self) -> nn.Conv2d:
        return self.conv2d

    def run(self, x: torch.Tensor, wh: Window, ww: Window, oh: int, ow: int, conv: Conv | None = None) -> torch.Tensor:
        u = self.upsample
        x = F.interpolate(x, scale_factor=u, mode="nearest")
        # (B, C, (i1-i0)*u, ...) -> keep exactly the upsampled rows [a, b)
        hh = oh + self.kernel - 1 - wh.pad_lo - wh.pad_hi
        ww_ = ow + self.kernel - 1 - ww.pad_lo - ww.pad_hi
        x = x[..., wh.crop : wh.crop + hh, ww.crop : ww.crop + ww_]
        return (conv or self.conv2d)(_pad(x, wh, ww, "reflect" if self.pad_mode == "reflect" else "zero"))


class TransposeConvLayer(Spatial):
    """TensorFlow `conv2d_transpose` with 'SAME' padding and stride 2 (Engstrom's upsampling):
    out[j] = sum over 2i + k = j of x[i] * w[k], output size 2n."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 2):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.up = stride
        self.conv = nn.ConvTranspose2d(cin, cout, kernel, stride, bias=False)

    @property
    def channels(self) -> tuple[int, int]:
        return self.conv.in_channels, self.conv.out_channels

    def out_size(self, n: int) -> int:
        return n * self.stride

    def window(self, o0: int, o1: int, n: int) -> Window:
        s, k = self.stride, self.kernel
        i0 = max(0, -(-(o0 - k + 1) // s))
        i1 = min(n, (o1 - 1) // s + 1)
        return Window(i0, i1, 0, 0, o0 - i0 * s)

    @property
    def bare_conv(self) -> nn.ConvTranspose2d:
        return self.conv

    def run(self, x: torch.Tensor, wh: Window, ww: Window, oh: int, ow: int, conv: Conv | None = None) -> torch.Tensor:
        y = (conv or self.conv)(x)
        y = F.pad(y, (0, max(0, ww.crop + ow - y.shape[-1]), 0, max(0, wh.crop + oh - y.shape[-2])))
        return y[..., wh.crop : wh.crop + oh, ww.crop : ww.crop + ow]


# ---- plan steps: what the whole-image runner (`run_plan`) and the tiler both interpret ----


@dataclass(frozen=True)
class Layer:
    """A spatial layer: computable window by window (`Spatial.window`)."""

    op: Spatial


@dataclass(frozen=True)
class Norm:
    """Instance norm: needs statistics over the whole image, so the tiler runs it between layers."""

    norm: nn.InstanceNorm2d


@dataclass(frozen=True)
class Act:
    """A pointwise function (ReLU, Engstrom's scaled tanh)."""

    fn: Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Push:
    """Remember the current tensor (the input of a residual block)."""


@dataclass(frozen=True)
class Add:
    """Add the last remembered tensor to the current one (the end of a residual block)."""


Step = Layer | Norm | Act | Push | Add
Plan = Sequence[Step]


def relu(x: torch.Tensor) -> torch.Tensor:
    return F.relu(x)


def _full(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def run_step(step: Step, x: torch.Tensor, stack: list[torch.Tensor]) -> torch.Tensor:
    """Execute one plan step on a whole tensor (`stack` holds the skips); `run_plan` is this in a loop, and the
    engine's whole-image runner calls it step by step to report progress and see a cancel between steps."""
    match step:
        case Norm(norm=inorm):
            # statistics in fp32 even under bf16/fp16 autocast: reduced-precision means and variances
            # are the main source of autocast error in these nets
            with torch.autocast(x.device.type, enabled=False):
                return inorm(_full(x))
        case Layer(op=op) if op.precise:
            with torch.autocast(x.device.type, enabled=False):
                return op(_full(x))
        case Layer(op=op):
            return op(x)
        case Act(fn=fn):
            return fn(x)
        case Push():
            stack.append(x)
            return x
        case Add():
            return x + stack.pop()
    raise TypeError(f"not a plan step: {step!r}")


def run_plan(plan: Plan, x: torch.Tensor) -> torch.Tensor:
    """Execute a plan on whole tensors (the untiled path)."""
    stack: list[torch.Tensor] = []
    for step in plan:
        x = run_step(step, x, stack)
    return x


def layer(module: object) -> Layer:
    assert isinstance(module, Spatial), type(module)
    return Layer(module)


def norm(module: object) -> Norm:
    assert isinstance(module, nn.InstanceNorm2d), type(module)
    return Norm(module)


def residual_plan(block: nn.Module) -> list[Step]:
    """x + IN(conv2(relu(IN(conv1(x))))): the residual block of both style-net families."""
    return [Push(), layer(block.conv1), norm(block.in1), Act(relu), layer(block.conv2), norm(block.in2), Add()]


def keep_head_fp32(net: nn.Module) -> None:
    """Mark the style nets' first three convolutions to run in fp32 under autocast.

    Measured: under bf16 most of the error comes from these (they see the raw 0-255 input); fp32 there takes
    the largest difference on trained nets from ~13% to ~3% of range for ~10% of the work. The 9x9 output conv
    stays bf16: with 3 output channels it is the slowest conv in fp32 on a CPU (a third of the compiled bf16
    run at 1024x1024) and bf16 there adds about 0.1% of range (docs/benchmarks.md)."""
    for i in (1, 2, 3):
        getattr(net, f"conv{i}").precise = True


def transformer_plan(net: nn.Module) -> list[Step]:
    """The shared body of the style nets (conv1..in5 with their ReLUs); each family adds its own output
    (`layer`/`norm` check the module types, so a plan can only hold what the runners understand)."""
    steps: list[Step] = []
    for i in (1, 2, 3):
        steps += [layer(getattr(net, f"conv{i}")), norm(getattr(net, f"in{i}")), Act(relu)]
    blocks: int = net.res_blocks  # type: ignore[assignment]
    for i in range(1, blocks + 1):
        steps += residual_plan(getattr(net, f"res{i}"))
    for i in (1, 2):
        steps += [layer(getattr(net, f"deconv{i}")), norm(getattr(net, f"in{i + 3}")), Act(relu)]
    return steps
