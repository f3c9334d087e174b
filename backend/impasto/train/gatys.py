"""Optimisation-based style transfer (Gatys, Ecker & Bethge 2016, "Image Style Transfer Using Convolutional
Neural Networks"), used on its own (a style image with no trained network) and as a refinement pass that
starts from a feed-forward result (Johnson et al. 2016 §4.1 compare their networks against exactly this
objective; starting from the network's output, a few iterations lower it further).

The image is optimised directly in RGB 0-255 space and kept inside [0, 255]: L-BFGS (the default) by
impasto.train.lbfgs, which projects its trial points onto the box and accepts only steps that lower the
loss; Adam clamps after every step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from impasto.cancel import CancelToken, Progress
from impasto.nets.vgg import LOSS_NETS, LossNet, load_loss_net
from impasto.train.lbfgs import ProjectedLbfgs
from impasto.train.losses import LossWeights, PerceptualLoss

# Measured on chicago x starry_night at 256 px (docs/training.md): with MSE content and MSE-of-Gram/(CHW)
# style losses on 0-255 Caffe features, 1e2 balances them; 1e5 wipes the content out.
DEFAULT_STYLE_WEIGHT = 1e2
DEFAULT_CONTENT_WEIGHT = 1.0

# L-BFGS's first trial step, in grey levels of the most-pulled pixel (the line search shortens it when it
# overshoots). Measured with torch's L-BFGS before (loss after 1/2/3/5/12 iterations as a fraction of the
# feed-forward loss): scream x chicago at 192 px 0.45/0.27/0.23/0.15/0.07 (torch's own first step, 1/|g|_1:
# 1.00/0.40/0.27/0.18/0.07), wave x tubingen 0.64/0.34/0.30/0.16/0.06 (torch's: 1.00/1.68/0.37/0.23/0.06);
# 8 levels was too timid. The same first step serves Gatys from the photo or from noise.
FIRST_STEP = 32.0


@dataclass
class GatysResult:
    image: Tensor  # (1, 3, H, W) RGB 0-255
    history: list[float] = field(default_factory=list)  # total loss at the start and after each iteration
    terms: dict[str, float] = field(default_factory=dict)  # the last iteration's unweighted terms
    evaluations: int = 0  # loss + gradient evaluations spent (one per iteration, more where L-BFGS backtracked)


_NET_CACHE: dict[tuple[str, str, str | None], LossNet] = {}


def _loss_net(name: str, device: torch.device, vgg16_weights: str | None) -> LossNet:
    # Building the net costs a file read; the engine calls refine() per request, so keep one per device.
    key = (name, str(device), vgg16_weights)
    if key not in _NET_CACHE:
        _NET_CACHE[key] = load_loss_net(name, vgg16_weights=vgg16_weights, device=device)
    return _NET_CACHE[key]


def _init_image(init: str | Tensor, content: Tensor, generator: torch.Generator | None) -> Tensor:
    if isinstance(init, Tensor):
        img = init.detach().to(content.device, torch.float32)
        if img.shape[-2:] != content.shape[-2:]:
            img = F.interpolate(img, size=content.shape[-2:], mode="bicubic", align_corners=False)
        return img.clamp(0, 255).contiguous()  # L-BFGS flattens .grad with view()
    if init == "content":
        return content.detach().clone(memory_format=torch.contiguous_format)
    if init == "noise":
        noise = torch.rand(content.shape, generator=generator, device="cpu") * 255
        return noise.to(content.device)
    raise ValueError(f"init must be 'content', 'noise' or an image tensor, not {init!r}")


def run(
    content: Tensor,
    style: Tensor,
    *,
    init: str | Tensor = "content",
    iterations: int = 150,
    optimizer: str = "lbfgs",
    lr: float | None = None,
    loss_net: str = "vgg19-partial",
    vgg16_weights: str | None = None,
    content_layer: str | None = None,
    style_layers: Sequence[str] | None = None,
    content_weight: float | None = None,
    style_weight: float | None = None,
    tv_weight: float | None = None,
    grid_weight: float | None = None,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    seed: int = 0,
    first_step: float = FIRST_STEP,
    autocast: torch.dtype | None = None,
) -> GatysResult:
    """Minimise λ_c ℓ_feat + λ_s Σ ℓ_style + λ_TV ℓ_TV over the pixels of an image.

    `content` and `style` are (1, 3, H, W) RGB 0-255 (they may differ in size). `optimizer` is ``lbfgs``
    (default; `lr` is the step tried first after the first iteration, 1 = the quasi-Newton step; the first
    moves the most-pulled pixel by `first_step` grey levels) or ``adam`` (lr 10 in 0-255 units).
    `history[k]` is the loss of the pixels after k iterations. `autocast` (e.g. torch.bfloat16) runs the loss
    network's convolutions in that precision (Gram matrices and losses stay fp32; the style and content
    targets are computed in fp32). `progress(stage, fraction)` and `cancel.check()` are called between
    iterations; a cancel raises `Cancelled` out of here. A weight of None means the default (content 1,
    style 1e2, TV 0, grid 0; the grid term is train.losses.grid_loss, which our style networks train with)."""
    device = torch.device(device)
    entry = LOSS_NETS[loss_net] if loss_net in LOSS_NETS else None
    if entry is None:
        load_loss_net(loss_net)  # raises NotFound with the list of choices
        raise AssertionError
    if optimizer not in ("lbfgs", "adam"):
        raise ValueError(f"optimizer must be 'lbfgs' or 'adam', not {optimizer!r}")
    net = _loss_net(loss_net, device, vgg16_weights)
    criterion = PerceptualLoss(
        net,
        content_layer or entry.default_content,
        tuple(style_layers or entry.default_style),
        LossWeights(
            content=DEFAULT_CONTENT_WEIGHT if content_weight is None else content_weight,
            style=DEFAULT_STYLE_WEIGHT if style_weight is None else style_weight,
            tv=tv_weight or 0.0,
            grid=grid_weight or 0.0,
        ),
    )
    content = content.to(device, torch.float32)
    criterion.set_style(style.to(device, torch.float32))
    content_feats = criterion.content_targets(content)
    image = _init_image(init, content, torch.Generator().manual_seed(seed))

    def score(x: Tensor) -> tuple[Tensor, dict[str, float]]:
        with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            return criterion(x, content, content_feats)

    if optimizer == "lbfgs":
        return _run_lbfgs(score, image, iterations, lr, first_step, progress, cancel)
    return _run_adam(score, image, iterations, lr, progress, cancel)


Score = Callable[[Tensor], tuple[Tensor, dict[str, float]]]  # pixels -> (total loss, unweighted terms)


def _run_lbfgs(score: Score, image: Tensor, iterations: int, lr: float | None, first_step: float,
               progress: Progress | None, cancel: CancelToken | None) -> GatysResult:
    scored: list[tuple[Tensor, dict[str, float]]] = []  # the newest evaluation: its pixels and terms

    def evaluate(x: Tensor) -> tuple[float, Tensor]:
        xg = x.detach().requires_grad_(True)
        loss, terms = score(xg)
        (grad,) = torch.autograd.grad(loss, xg)
        scored[:] = [(x, terms)]
        return terms["total"], grad

    opt = ProjectedLbfgs(evaluate, first_step=first_step, step_length=lr or 1.0)
    # history[k] is the loss of the pixels after k iterations: the evaluation each iteration accepted
    history = [opt.start(image)]
    terms = scored[0][1]
    for it in range(iterations):
        if cancel is not None:
            cancel.check()
        history.append(opt.step())
        if scored[0][0] is opt.x:
            terms = scored[0][1]
        if progress is not None:
            progress("gatys", (it + 1) / iterations)
    return GatysResult(opt.x, history, terms, opt.evaluations)


def _run_adam(score: Score, image: Tensor, iterations: int, lr: float | None, progress: Progress | None,
              cancel: CancelToken | None) -> GatysResult:
    image = image.requires_grad_(True)
    opt = torch.optim.Adam([image], lr=lr or 10.0)
    history: list[float] = []
    for it in range(iterations):
        if cancel is not None:
            cancel.check()
        opt.zero_grad(set_to_none=True)
        loss, terms = score(image)
        history.append(terms["total"])  # the loss of the pixels the previous iteration left
        loss.backward()
        opt.step()
        with torch.no_grad():
            image.clamp_(0, 255)
        if not math.isfinite(terms["total"]):
            break  # diverged (too large an lr); the clamp keeps pixels valid, so stop rather than spin
        if progress is not None:
            progress("gatys", (it + 1) / iterations)
    with torch.no_grad():
        terms = score(image)[1]
    history.append(terms["total"])
    return GatysResult(image.detach(), history, terms, len(history))


def _resize(x: Tensor, h: int, w: int) -> Tensor:
    if x.shape[-2:] == (h, w):
        return x
    return F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True).clamp(0, 255)


def refine(
    content: Tensor,
    init: Tensor,
    style: Tensor,
    *,
    iterations: int,
    working_size: int | None = None,
    autocast: torch.dtype | None = None,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    **weights: float,
) -> GatysResult:
    """Refinement pass for the engine: Gatys iterations starting from `init` (usually the feed-forward
    stylisation of `content`). All tensors (1, 3, H, W) RGB 0-255. Keyword weights: content_weight,
    style_weight, tv_weight (None: the default); also loss_net. `autocast`: see run().

    `working_size` (default None: refine at full size) refines an image whose long side is larger at that
    size instead, with the style image scaled by the same factor (so its strokes keep their size relative to
    the picture), and adds the correction it made there, upsampled, to `init`. It is much cheaper and much
    weaker: measured on the full-size objective (docs/training.md, benchmarks/refine_speed.py) it keeps only
    part of the gain, because the objective's finest features cannot be drawn at the smaller size.

    Returns the refined full-size image on `device`, with the loss history at the size it was refined at;
    every iteration lowers that loss (impasto.train.lbfgs)."""
    h, w = init.shape[-2:]
    content = _resize(content.to(device, torch.float32), h, w)
    init = init.to(device, torch.float32)
    if iterations <= 0:
        return GatysResult(init, [], {}, 0)
    k = working_size / max(h, w) if working_size else 1.0
    if k >= 1:
        return run(content, style, init=init, iterations=iterations, device=device, progress=progress,
                   cancel=cancel, autocast=autocast, **weights)  # type: ignore[arg-type]
    small = (max(1, round(h * k)), max(1, round(w * k)))
    style = _resize(style.to(device, torch.float32), max(1, round(style.shape[-2] * k)),
                    max(1, round(style.shape[-1] * k)))
    start = _resize(init, *small)
    result = run(_resize(content, *small), style, init=start, iterations=iterations, device=device,
                 progress=progress, cancel=cancel, autocast=autocast, **weights)  # type: ignore[arg-type]
    correction = F.interpolate(result.image - start, size=(h, w), mode="bicubic", align_corners=False)
    result.image = (init + correction).clamp(0, 255)
    return result
