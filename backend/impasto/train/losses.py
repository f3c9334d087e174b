"""Perceptual losses (Johnson, Alahi & Fei-Fei 2016, §3.1-3.3).

* feature reconstruction: ℓ_feat^{φ,j}(ŷ, y) = ||φ_j(ŷ) − φ_j(y)||² / (C_j H_j W_j)  (a mean squared error);
* style reconstruction: ℓ_style^{φ,j} = ||G_j(ŷ) − G_j(y)||²_F with the Gram matrix
  G_j(x) = ψψᵀ / (C_j H_j W_j), ψ the (C_j, H_j W_j) reshaped features; we average the squared difference
  over the C_j² entries (MSE) so a weight means the same thing at every layer width;
* total variation regulariser ℓ_TV (§3.3, after Mahendran & Vedaldi): squared neighbour differences;
* pixel loss ℓ_pixel = ||ŷ − y||² / (CHW).

All images are RGB 0-255 (B, 3, H, W); each loss returns a scalar tensor. Every weight is configurable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from impasto.nets.vgg import LossNet

_CHUNK = 1 << 15  # columns of a reduced-precision ψ widened to fp32 at a time (so they stay in cache)


class _Gram(torch.autograd.Function):
    """ψψᵀ / n, in fp32 at least, with a backward of one matrix product, (dG + dGᵀ) ψ / n (autograd's own
    backward of ψ @ ψᵀ takes two and adds their (B, C, HW) results). A bf16/fp16 ψ (autocast) is widened to
    fp32 a slice of columns at a time, in both directions, instead of as one fp32 copy of the whole feature
    map: at a megapixel those copies cost about as much as the products."""

    @staticmethod
    def forward(ctx: Any, psi: Tensor, n: float) -> Tensor:
        ctx.save_for_backward(psi)
        ctx.n = n
        with torch.autocast(psi.device.type, enabled=False):  # autocast would run the product in bf16/fp16
            if psi.dtype not in (torch.bfloat16, torch.float16):
                return psi @ psi.transpose(1, 2) / n
            b, c, m = psi.shape
            g = torch.zeros((b, c, c), dtype=torch.float32, device=psi.device)
            for i in range(0, m, _CHUNK):
                p = psi[..., i: i + _CHUNK].float()
                g.baddbmm_(p, p.transpose(1, 2))
            return g / n

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (psi,) = ctx.saved_tensors
        sym = (grad + grad.transpose(1, 2)).float() / ctx.n
        if psi.dtype not in (torch.bfloat16, torch.float16):
            return sym.to(psi.dtype) @ psi, None
        out = torch.empty_like(psi, memory_format=torch.contiguous_format)
        for i in range(0, psi.shape[-1], _CHUNK):
            out[..., i: i + _CHUNK] = sym @ psi[..., i: i + _CHUNK].float()
        return out, None


def gram(features: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, C, C), normalised by C·H·W (paper eq. 3). Computed in fp32 (or wider) even under
    autocast, which would otherwise run the product in bf16/fp16: AMP can neither overflow nor round it."""
    b, c, h, w = features.shape
    return _Gram.apply(features.reshape(b, c, h * w), float(c * h * w))  # type: ignore[no-any-return]


def feature_loss(output: Tensor, target: Tensor) -> Tensor:
    """Feature reconstruction loss: squared Euclidean distance normalised by C·H·W (paper eq. 2)."""
    return F.mse_loss(output.float(), target.float())


def style_loss(output_grams: Sequence[Tensor], target_grams: Sequence[Tensor]) -> Tensor:
    """Sum over layers of the Gram difference (MSE over the C² entries). A target with batch 1 is broadcast
    over the output batch (one style image, many content images)."""
    total = torch.zeros((), device=output_grams[0].device)
    for g, t in zip(output_grams, target_grams, strict=True):
        total = total + F.mse_loss(g, t.expand_as(g))
    return total


def tv_loss(image: Tensor) -> Tensor:
    """Total variation: mean squared difference between horizontal and vertical neighbours."""
    dh = image[:, :, 1:, :] - image[:, :, :-1, :]
    dw = image[:, :, :, 1:] - image[:, :, :, :-1]
    return dh.float().pow(2).mean() + dw.float().pow(2).mean()


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur, radius ceil(3σ), reflect padding. (B, C, H, W) -> same."""
    if sigma <= 0:
        return x
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def grid_loss(image: Tensor, period: int = 4, sigma: float = 2.0) -> Tensor:
    """The variance, over the period x period pixel phases, of the image's mean fine detail (the image minus a
    Gaussian blur of σ `sigma`), per image and channel, averaged. A photo's texture has no fixed phase, so its
    phase means agree; a texture the network lays at its own 4-pixel period (two stride-2 layers) does not.
    The measure in train/artifacts.py is the spread of the same means, on grey values."""
    x = image.float()
    d = x - gaussian_blur(x, sigma)
    h, w = d.shape[-2] // period * period, d.shape[-1] // period * period
    means = d[..., :h, :w].reshape(*d.shape[:2], h // period, period, w // period, period).mean(dim=(2, 4))
    return means.flatten(2).var(dim=2, unbiased=False).mean()


def pixel_loss(output: Tensor, target: Tensor) -> Tensor:
    """Per-pixel loss (the paper's ℓ_pixel baseline for super-resolution)."""
    return F.mse_loss(output.float(), target.float())


@dataclass(frozen=True)
class LossWeights:
    """λ_c, λ_s, λ_TV, λ_pixel, for these mean-normalised losses on 0-255 Caffe features (the offline VGG-19).
    The callers choose: style training uses 1 (after a ramp from 0, train.StyleConfig), Gatys 100
    (docs/training.md)."""

    content: float = 1.0
    style: float = 10.0
    tv: float = 1e-4
    pixel: float = 0.0
    grid: float = 0.0


@dataclass
class PerceptualLoss:
    """Content (feature) + style + TV + pixel loss on one loss network.

    Call `set_style(style_image)` once; then `loss(output, content)` returns (total, terms) where terms holds
    the unweighted parts as floats for logging."""

    net: LossNet
    content_layer: str | None
    style_layers: tuple[str, ...]
    weights: LossWeights = field(default_factory=LossWeights)
    style_grams: list[Tensor] = field(default_factory=list)

    @property
    def taps(self) -> list[str]:
        taps = list(self.style_layers)
        if self.content_layer and self.content_layer not in taps:
            taps.append(self.content_layer)
        return taps

    @torch.no_grad()
    def set_style(self, style: Tensor) -> None:
        feats = self.net(style, self.style_layers)
        self.style_grams = [gram(feats[name]) for name in self.style_layers]

    def content_targets(self, content: Tensor) -> Tensor | None:
        """Features of the content image at the content layer (no grad), to reuse across iterations."""
        if not self.content_layer or self.weights.content == 0:
            return None
        with torch.no_grad():
            return self.net(content, [self.content_layer])[self.content_layer]

    def __call__(
        self, output: Tensor, content: Tensor | None = None, content_features: Tensor | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        w = self.weights
        use_style = w.style != 0 and bool(self.style_layers)
        use_content = w.content != 0 and self.content_layer is not None
        taps = ([*self.style_layers] if use_style else []) + ([self.content_layer] if use_content else [])
        feats = self.net(output, [t for t in dict.fromkeys(taps) if t]) if taps else {}
        total = torch.zeros((), device=output.device)
        terms: dict[str, float] = {}
        if use_content:
            assert self.content_layer is not None
            if content_features is None:
                if content is None:
                    raise ValueError("content loss needs the content image or its features")
                content_features = self.content_targets(content)
            c = feature_loss(feats[self.content_layer], content_features)  # type: ignore[arg-type]
            total = total + w.content * c
            terms["content"] = c.item()
        if use_style:
            if not self.style_grams:
                raise ValueError("call set_style() before computing a style loss")
            s = style_loss([gram(feats[name]) for name in self.style_layers], self.style_grams)
            total = total + w.style * s
            terms["style"] = s.item()
        if w.tv:
            t = tv_loss(output)
            total = total + w.tv * t
            terms["tv"] = t.item()
        if w.grid:
            g = grid_loss(output)
            total = total + w.grid * g
            terms["grid"] = g.item()
        if w.pixel:
            if content is None:
                raise ValueError("pixel loss needs the target image")
            p = pixel_loss(output, content)
            total = total + w.pixel * p
            terms["pixel"] = p.item()
        terms["total"] = total.item()
        return total, terms
