"""Optimisation-based style transfer (Gatys, Ecker & Bethge 2016, "Image Style Transfer Using Convolutional
Neural Networks"), used on its own (a style image with no trained network) and as a refinement pass that
starts from a feed-forward result (Johnson et al. 2016 §4.1 compare their networks against exactly this
objective; starting from the network's output, a few iterations lower it further).

The image is optimised directly in RGB 0-255 space and clamped to [0, 255] after every step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from impasto.cancel import CancelToken, Progress
from impasto.nets.vgg import LOSS_NETS, LossNet, load_loss_net
from impasto.train.losses import LossWeights, PerceptualLoss

# Measured on chicago x starry_night at 256 px (docs/training.md): with MSE content and MSE-of-Gram/(CHW)
# style losses on 0-255 Caffe features, 1e2 balances them; 1e5 wipes the content out.
DEFAULT_STYLE_WEIGHT = 1e2
DEFAULT_CONTENT_WEIGHT = 1.0


@dataclass
class GatysResult:
    image: Tensor  # (1, 3, H, W) RGB 0-255
    history: list[float] = field(default_factory=list)  # total loss at the start and after each iteration
    terms: dict[str, float] = field(default_factory=dict)  # the last iteration's unweighted terms


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
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    seed: int = 0,
    first_step: float = 0.0,
) -> GatysResult:
    """Minimise λ_c ℓ_feat + λ_s Σ ℓ_style + λ_TV ℓ_TV over the pixels of an image.

    `content` and `style` are (1, 3, H, W) RGB 0-255 (they may differ in size). `optimizer` is ``lbfgs``
    (default, lr 1) or ``adam`` (lr 10 in 0-255 units). `progress(stage, fraction)` and `cancel.check()` are
    called between iterations; a cancel raises `Cancelled` out of here. A weight of None means the default
    (content 1, style 1e2, TV 0)."""
    device = torch.device(device)
    entry = LOSS_NETS[loss_net] if loss_net in LOSS_NETS else None
    if entry is None:
        load_loss_net(loss_net)  # raises NotFound with the list of choices
        raise AssertionError
    net = _loss_net(loss_net, device, vgg16_weights)
    criterion = PerceptualLoss(
        net,
        content_layer or entry.default_content,
        tuple(style_layers or entry.default_style),
        LossWeights(
            content=DEFAULT_CONTENT_WEIGHT if content_weight is None else content_weight,
            style=DEFAULT_STYLE_WEIGHT if style_weight is None else style_weight,
            tv=tv_weight or 0.0,
        ),
    )
    content = content.to(device, torch.float32)
    criterion.set_style(style.to(device, torch.float32))
    content_feats = criterion.content_targets(content)
    gen = torch.Generator().manual_seed(seed)
    image = _init_image(init, content, gen).requires_grad_(True)

    if optimizer == "lbfgs":
        # One L-BFGS iteration per step() keeps its curvature history across steps (torch keeps it in the
        # optimizer state) while letting us clamp, report and honour cancel between iterations.
        # With a first step (refinement) each iteration also runs a strong-Wolfe line search, so no step can
        # raise the loss: a few more evaluations per iteration, worth it when there are only a few iterations.
        opt: torch.optim.Optimizer = torch.optim.LBFGS(
            [image], lr=lr or 1.0, max_iter=1, history_size=50, tolerance_grad=0.0, tolerance_change=0.0,
            line_search_fn="strong_wolfe" if first_step > 0 else None,
        )
    elif optimizer == "adam":
        opt = torch.optim.Adam([image], lr=lr or 10.0)
    else:
        raise ValueError(f"optimizer must be 'lbfgs' or 'adam', not {optimizer!r}")

    last_terms: dict[str, float] = {}
    step_start: list[float] = []  # the loss at the pixels a step starts from (its first evaluation)

    def closure() -> Tensor:
        nonlocal last_terms
        opt.zero_grad(set_to_none=True)
        loss, last_terms = criterion(image, content, content_feats)
        if not step_start:
            step_start.append(last_terms["total"])
        loss.backward()
        return loss

    # Each step's first evaluation is at the pixels the previous step left (after the clamp), so those values
    # are the history (a line search evaluates more points after it); one forward pass at the end scores the
    # returned image.
    history: list[float] = []
    first_lr = None
    if first_step > 0 and optimizer == "lbfgs" and iterations > 0:
        # torch scales L-BFGS's first step to lr/|g|_1: on an image that moves the most-pulled pixel by a tiny
        # fraction of a grey level, so the first iteration changes nothing and the second, taken with a
        # curvature estimate from that non-step, can overshoot (docs/benchmarks.md, section 4). Starting from
        # the photo over hundreds of iterations that does not matter; for a short refinement it does. So the
        # first step moves the pixel with the largest gradient by `first_step` grey levels instead (one extra
        # loss evaluation to measure the gradient).
        closure()
        g = image.grad.detach()  # type: ignore[union-attr]
        gmax = float(g.abs().max())
        if gmax > 0:
            first_lr = first_step * max(float(g.abs().sum()), 1.0) / gmax
    for it in range(iterations):
        if cancel is not None:
            cancel.check()
        if first_lr is not None:
            for group in opt.param_groups:
                group["lr"] = first_lr if it == 0 else (lr or 1.0)
        step_start.clear()
        opt.step(closure)  # type: ignore[arg-type]  # torch accepts a tensor-valued closure
        history.append(step_start[0])
        with torch.no_grad():
            image.clamp_(0, 255)
        if not math.isfinite(last_terms["total"]):
            break  # diverged (too large an Adam lr); the clamp keeps pixels valid, so stop rather than spin
        if progress is not None:
            progress("gatys", (it + 1) / iterations)
    with torch.no_grad():
        last_terms = criterion(image, content, content_feats)[1]
    history.append(last_terms["total"])
    return GatysResult(image.detach(), history, last_terms)


# Refinement's first L-BFGS step, in grey levels of the most-pulled pixel (the line search then adjusts it).
# Measured (loss after 1/2/3/5/12 iterations as a fraction of the feed-forward loss): scream x chicago at
# 192 px 0.45/0.27/0.23/0.15/0.07 (torch's own first step: 1.00/0.40/0.27/0.18/0.07), wave x tubingen
# 0.64/0.34/0.30/0.16/0.06 (torch's: 1.00/1.68/0.37/0.23/0.06), udnie x chelsea at 48 px 0.50/0.33/0.19/0.11
# and 0.06 at 10 (torch's: 1.00/1.46/0.41/0.20/0.07). 8 levels was too timid, and without the line search
# 32 rose again at 10 iterations on the small image.
REFINE_FIRST_STEP = 32.0


def refine(
    content: Tensor,
    init: Tensor,
    style: Tensor,
    *,
    iterations: int,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    **weights: float,
) -> Tensor:
    """Refinement pass for the engine: Gatys iterations starting from `init` (usually the feed-forward
    stylisation of `content`). All tensors (1, 3, H, W) RGB 0-255; returns the refined image on `device`.
    Keyword weights: content_weight, style_weight, tv_weight (None: the default); also loss_net, optimizer.
    The first L-BFGS step is scaled to REFINE_FIRST_STEP grey levels, so even one iteration lowers the loss."""
    if iterations <= 0:
        return init
    return run(
        content, style, init=init, iterations=iterations, device=device, progress=progress, cancel=cancel,
        first_step=REFINE_FIRST_STEP, **weights,  # type: ignore[arg-type]
    ).image
