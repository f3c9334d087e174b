"""Train a single-image super-resolution network (Johnson, Alahi & Fei-Fei 2016, §4.2).

The paper trains x4 and x8 networks on 288x288 patches from 10k COCO images; the low-resolution input is made
by blurring with a Gaussian of σ = 1 and downsampling with bicubic interpolation. Adam, lr 1e-3, 200k
iterations at batch 4, loss either ℓ_feat at relu2_2 of VGG-16 or the per-pixel ℓ_pixel, plus a small total
variation term. We use the offline VGG-19's relu2_2 unless VGG-16 weights are given.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from impasto.cancel import CancelToken, Progress
from impasto.device import pick_device
from impasto.errors import InvalidArgument
from impasto.nets.sr import build_johnson_sr
from impasto.nets.vgg import load_loss_net
from impasto.train.common import ImageFolder, fit, image_grid, load_checkpoint, resumed_length, training_record
from impasto.train.losses import LossWeights, PerceptualLoss, gaussian_blur, pixel_loss, tv_loss


@dataclass(frozen=True)
class SRConfig:
    data: str  # folder of high-resolution photos
    name: str
    scale: int = 4
    loss: str = "feat"  # "feat" (relu2_2) or "pixel"
    loss_net: str = "vgg19-partial"
    vgg16_weights: str | None = None
    feature_layer: str = "relu2_2"
    patch_size: int = 288
    batch: int = 4
    iterations: int = 200_000
    lr: float = 1e-3
    lr_schedule: str = "constant"
    warmup: int = 0
    tv_weight: float = 1e-5
    sigma: float = 1.0
    native_resolution: bool = True  # crop photos at their own resolution (False: shrink to the patch size first)
    channels: int = 64
    blocks: int = 4
    bicubic_skip: bool = False  # the paper's nets predict the image itself
    hold_out: int = 0  # every K-th photo (sorted) kept out of training for validation (0: none)
    dihedral: bool = False  # augment with 90-degree turns as well as flips
    seed: int = 0
    checkpoint_every: int = 1000
    sample_every: int = 1000
    amp: bool = True
    out_dir: str = ""

    def resolved(self) -> SRConfig:
        if self.scale not in (2, 4, 8):
            raise InvalidArgument(f"--scale must be 2, 4 or 8, not {self.scale}")
        if self.loss not in ("feat", "pixel"):
            raise InvalidArgument(f"--loss must be feat or pixel, not {self.loss!r}")
        if self.patch_size % self.scale:
            raise InvalidArgument(f"--patch-size {self.patch_size} is not a multiple of the scale {self.scale}")
        return replace(self, out_dir=self.out_dir or str(Path("impasto-train") / self.name))


def degrade(hr: Tensor, scale: int, sigma: float = 1.0) -> Tensor:
    """The paper's low-resolution inputs: Gaussian blur σ then bicubic downsampling (antialiased, like
    MATLAB's imresize). (B, 3, H, W) 0-255 -> (B, 3, H/scale, W/scale), clamped and rounded like a saved image."""
    with torch.autocast(hr.device.type, enabled=False):  # the inputs are exact data, not a place for bf16/fp16
        lr = F.interpolate(gaussian_blur(hr.float(), sigma), scale_factor=1 / scale, mode="bicubic",
                           antialias=True, align_corners=False)
    return lr.clamp(0, 255).round()


@dataclass
class SRRun:
    model: nn.Module
    config: SRConfig
    history: list[dict[str, float]]
    out_dir: Path


def config_from_checkpoint(ckpt: dict[str, Any], **overrides: Any) -> SRConfig:
    return replace(SRConfig(**ckpt["config"]), **overrides)


def train_sr(
    cfg: SRConfig,
    *,
    resume: str | Path | None = None,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    show_bar: bool = True,
) -> SRRun:
    """Train (or resume) a super-resolution network; checkpoints, samples and loss.png go to `cfg.out_dir`."""
    ckpt = load_checkpoint(resume) if resume else None
    if ckpt is not None:
        cfg = config_from_checkpoint(ckpt, iterations=resumed_length(ckpt, cfg.iterations), name=cfg.name)
    cfg = cfg.resolved()
    dev = pick_device(str(device or "auto"))

    torch.manual_seed(cfg.seed)
    model_args: dict[str, Any] = {"scale": cfg.scale, "channels": cfg.channels, "blocks": cfg.blocks,
                  "bicubic_skip": cfg.bicubic_skip}
    model = build_johnson_sr(**model_args)
    if cfg.bicubic_skip:
        # start exactly at bicubic: the residual branch's last conv begins near zero (x0.01, no bias), so the
        # first steps refine bicubic instead of first unlearning a random residual of +-100 grey levels
        with torch.no_grad():
            model.tail.weight.mul_(0.01)
            model.tail.bias.zero_()  # type: ignore[union-attr]
    if cfg.loss == "feat":
        net = load_loss_net(cfg.loss_net, [cfg.feature_layer], vgg16_weights=cfg.vgg16_weights, device=dev)
        crit = PerceptualLoss(net, cfg.feature_layer, (), LossWeights(content=1.0, style=0.0, tv=cfg.tv_weight))
    else:
        crit = None  # the pixel loss needs no loss network
    photos = ImageFolder(cfg.data, cfg.patch_size, native=cfg.native_resolution, hold_out=cfg.hold_out)
    fixed = [photos.center(i, cfg.patch_size) for i in range(min(3, len(photos)))]

    def compute_loss(m: nn.Module, hr: Tensor) -> tuple[Tensor, dict[str, float]]:
        sr = m(degrade(hr, cfg.scale, cfg.sigma))
        if crit is not None:
            return crit(sr, content=hr)
        pix = pixel_loss(sr, hr)
        total = pix + cfg.tv_weight * tv_loss(sr)
        return total, {"pixel": pix.item(), "total": total.item()}

    def write_samples(m: nn.Module, path: Path) -> None:
        rows = []
        for hr in fixed:
            lr = degrade(hr, cfg.scale, cfg.sigma)
            bic = F.interpolate(lr, scale_factor=cfg.scale, mode="bicubic", align_corners=False).clamp(0, 255)
            rows.append([bic, m(lr.to(dev)).clamp(0, 255).cpu(), hr])
        image_grid(rows, path)
        image_grid(rows, path.with_name("samples_latest.png"))

    history = fit(model=model, model_args=model_args, cfg=cfg, out_dir=Path(cfg.out_dir),
                  next_batch=lambda g: photos.batch(cfg.batch, cfg.patch_size, g, cfg.dihedral),
                  compute_loss=compute_loss,
                  write_samples=write_samples, device=dev, resume=ckpt, progress=progress, cancel=cancel,
                  show_bar=show_bar)
    return SRRun(model.cpu(), cfg, history, Path(cfg.out_dir))


def save_sr_model(run: SRRun, store: Any = None, *, overwrite: bool = False) -> Any:
    """Put a trained SR network into the model store with its training config."""
    from impasto.models.info import ModelInfo
    from impasto.models.store import ModelStore

    cfg = run.config
    last = {k: v for k, v in (run.history[-1] if run.history else {}).items() if k != "seconds"}
    info = ModelInfo(
        name=cfg.name, kind="sr", arch="johnson_sr", scale=cfg.scale, display_name=cfg.name,
        description=f"x{cfg.scale} super-resolution trained with `impasto train sr` ({cfg.loss} loss)",
        license="user-trained", source=f"impasto train sr, run {Path(cfg.out_dir).name}",
        params={"scale": cfg.scale, "channels": cfg.channels, "blocks": cfg.blocks,
                "bicubic_skip": cfg.bicubic_skip},
        training=training_record(cfg, last), tiling_exact=True,
    )
    return (store or ModelStore()).save(cfg.name, run.model, info, overwrite=overwrite)
