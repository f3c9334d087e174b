"""Train a feed-forward style network (Johnson, Alahi & Fei-Fei 2016, §3-4.1).

The image transformation network (supplementary Table 1) is trained with Adam on random crops of photos to
minimise λ_c ℓ_feat + λ_s Σ_j ℓ_style^j + λ_TV ℓ_TV against one style image. The paper trains 40k iterations
at batch 4 on 256x256 COCO images, lr 1e-3, content relu2_2 and style relu1_2/2_2/3_3/4_3 of VGG-16.
Where we deviate (offline VGG-19 without relu4_x, style weights for our loss normalisation, a mid-grey
start) is in docs/training.md.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from impasto.cancel import CancelToken, Progress
from impasto.device import pick_device
from impasto.errors import InvalidArgument
from impasto.nets.johnson import build_johnson
from impasto.nets.vgg import LOSS_NETS, load_loss_net
from impasto.train.common import (
    ImageFolder,
    fit,
    image_grid,
    load_checkpoint,
    load_rgb,
    resumed_length,
    training_record,
)
from impasto.train.losses import LossWeights, PerceptualLoss

TRAIN_CONTENT_LAYER = "relu2_2"


@dataclass(frozen=True)
class StyleConfig:
    style_image: str
    content: str  # folder of photos
    name: str
    loss_net: str = "vgg19-partial"
    vgg16_weights: str | None = None
    image_size: int = 256
    batch: int = 4
    iterations: int = 40_000  # paper: 2 epochs over 80k COCO images at batch 4
    lr: float = 1e-3
    lr_schedule: str = "constant"
    warmup: int = 0
    content_weight: float = 1.0
    # Our losses are means on 0-255 Caffe features. On the offline VGG-19 a photo's own style loss is ~10x its
    # relu2_2 content loss against grey, so anything much above 1 buys texture at the cost of the photo; 1 with
    # the ramp below is the recipe our shipped styles were trained with (docs/training.md).
    style_weight: float = 1.0
    # Iterations over which the style weight rises linearly from 0 to style_weight (0: full from the start).
    # The net first learns to pass the photo through on the content loss, then takes the style on gradually;
    # with the style term at full weight from the first step, runs at weights 1-30 settled on a texture that
    # ignored its input for hundreds of iterations (docs/training.md).
    style_ramp: int = 400
    tv_weight: float = 1e-4
    # Weight of grid_loss (train/losses.py): the variance of the output's fine detail over the 4x4 pixel phases,
    # the texture fixed to the network's two stride-2 layers (0: off). At 1e4 it takes the grid from 13 grey
    # levels to 0.7 for 1% more style loss (800-iteration runs side by side; docs/quality.md).
    grid_weight: float = 1e4
    # Start from a trained style network's weights (a store name or an Impasto model file) instead of from
    # scratch: fine-tuning, e.g. with a recipe change. The widths and block count must be that network's.
    init_from: str | None = None
    content_layer: str | None = None  # None: relu2_2, the paper's
    style_layers: tuple[str, ...] | None = None
    style_size: int | None = 256  # long side of the style image for its Gram targets; None: as is
    widths: tuple[int, int, int] = (32, 64, 128)
    res_blocks: int = 5
    seed: int = 0
    checkpoint_every: int = 500
    sample_every: int = 500
    amp: bool = True
    out_dir: str = ""

    def resolved(self) -> StyleConfig:
        """Fill the loss-network defaults in, so the saved config says exactly what was used."""
        entry = LOSS_NETS[self.loss_net]
        # relu2_2 is the paper's content layer for training and both loss networks have it; Gatys keeps the
        # entry's default (relu3_3 on the VGG-19), which starts from the photo and so needs no pinning.
        return replace(self, content_layer=self.content_layer or TRAIN_CONTENT_LAYER,
                       style_layers=tuple(self.style_layers or entry.default_style),
                       out_dir=self.out_dir or str(Path("impasto-train") / self.name))


@dataclass
class StyleRun:
    model: nn.Module
    config: StyleConfig
    history: list[dict[str, float]] = field(default_factory=list)
    out_dir: Path = Path()


def style_weight_at(it: int, weight: float, ramp: int) -> float:
    """The style weight at iteration `it` (0-based): rising linearly over the first `ramp` iterations."""
    return weight if ramp <= 0 else weight * min(1.0, it / ramp)


def start_from(model: nn.Module, spec: str) -> None:
    """Load the weights of the style network `spec` (a store name or an Impasto .safetensors file) into `model`."""
    from impasto.models.fileformat import build_network, load_state, read_info
    from impasto.models.store import ModelStore

    path = Path(spec)
    net: nn.Module
    if path.suffix == ".safetensors" and path.is_file():
        info = read_info(path)
        if info.kind != "style":
            raise InvalidArgument(f"--init-from {spec}: a {info.kind} model, not a style network")
        net = build_network(info, load_state(path))
    else:
        net = ModelStore().load(spec, kind="style")
    try:
        model.load_state_dict({k: v.float() for k, v in net.state_dict().items()})
    except RuntimeError:
        arch = getattr(net, "arch", "?")
        raise InvalidArgument(f"--init-from {spec}: not a network of this shape ({arch}; the new one is johnson "
                              "with the given --widths and --res-blocks)",
                              hint="`impasto models info NAME` shows its architecture") from None


def config_from_checkpoint(ckpt: dict[str, Any], **overrides: Any) -> StyleConfig:
    c = dict(ckpt["config"])
    c.setdefault("grid_weight", 0.0)  # a run from before the grid term trained without it; resume it so
    for key in ("style_layers", "widths"):
        if c.get(key) is not None:
            c[key] = tuple(c[key])
    return replace(StyleConfig(**c), **overrides)


def train_style(
    cfg: StyleConfig,
    *,
    resume: str | Path | None = None,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    show_bar: bool = True,
) -> StyleRun:
    """Train (or resume) a style network; checkpoints, samples and loss.png go to `cfg.out_dir`.

    With `resume`, the config comes from the checkpoint (only `iterations` may be raised to train longer)."""
    ckpt = load_checkpoint(resume) if resume else None
    if ckpt is not None:
        cfg = config_from_checkpoint(ckpt, iterations=resumed_length(ckpt, cfg.iterations), name=cfg.name)
    cfg = cfg.resolved()
    dev = pick_device(str(device or "auto"))
    assert cfg.content_layer is not None and cfg.style_layers is not None

    torch.manual_seed(cfg.seed)
    model_args = {"widths": list(cfg.widths), "res_blocks": cfg.res_blocks}
    model = build_johnson(widths=cfg.widths, res_blocks=cfg.res_blocks)
    # The pytorch/examples net outputs raw 0-255 values and starts near black; Adam at 1e-3 needs thousands of
    # steps just to lift the last bias to mid-grey. Starting it there costs nothing and helps short runs.
    with torch.no_grad():
        nn.init.constant_(model.deconv3.conv2d.bias, 127.5)  # type: ignore[arg-type]
    if ckpt is None and cfg.init_from:
        start_from(model, cfg.init_from)

    net = load_loss_net(cfg.loss_net, [*cfg.style_layers, cfg.content_layer], vgg16_weights=cfg.vgg16_weights,
                        device=dev)
    crit = PerceptualLoss(net, cfg.content_layer, cfg.style_layers,
                          LossWeights(content=cfg.content_weight, style=cfg.style_weight, tv=cfg.tv_weight,
                                      grid=cfg.grid_weight))
    style = load_rgb(cfg.style_image, cfg.style_size)
    crit.set_style(style.to(dev))
    photos = ImageFolder(cfg.content, cfg.image_size)
    fixed = [photos.center(i, cfg.image_size) for i in range(min(4, len(photos)))]

    step = [int(ckpt["iteration"]) if ckpt is not None else 0]  # the iteration compute_loss is called for

    def compute_loss(m: nn.Module, batch: Tensor) -> tuple[Tensor, dict[str, float]]:
        crit.weights = replace(crit.weights, style=style_weight_at(step[0], cfg.style_weight, cfg.style_ramp))
        step[0] += 1
        return crit(m(batch), batch)

    def write_samples(m: nn.Module, path: Path) -> None:
        outs = [m(x.to(dev)).clamp(0, 255).cpu() for x in fixed]
        image_grid([fixed, outs], path)
        image_grid([fixed, outs], path.with_name("samples_latest.png"))

    out_dir = Path(cfg.out_dir)
    history = fit(model=model, model_args=model_args, cfg=cfg, out_dir=out_dir,
                  next_batch=lambda g: photos.batch(cfg.batch, cfg.image_size, g), compute_loss=compute_loss,
                  write_samples=write_samples, device=dev, resume=ckpt, progress=progress, cancel=cancel,
                  show_bar=show_bar)
    return StyleRun(model.cpu(), cfg, history, out_dir)


def _jpeg(path: str, side: int, fmt: str = "JPEG") -> bytes:
    with Image.open(path) as src:
        im = src.convert("RGB")
    im.thumbnail((side, side), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def save_style_model(run: StyleRun, store: Any = None, *, overwrite: bool = False) -> Any:
    """Put a trained network into the model store with its config, final losses and style thumbnail."""
    from impasto.models.info import ModelInfo
    from impasto.models.store import ModelStore

    cfg = run.config
    last = {k: v for k, v in (run.history[-1] if run.history else {}).items() if k != "seconds"}
    info = ModelInfo(
        name=cfg.name, kind="style", arch="johnson", display_name=cfg.name,
        description=f"Trained with `impasto train style` on {Path(cfg.style_image).name}",
        license="user-trained", attribution="", source=f"impasto train style, run {Path(cfg.out_dir).name}",
        params={"widths": list(cfg.widths), "res_blocks": cfg.res_blocks},
        training=training_record(cfg, last),
        thumbnail_png=_jpeg(cfg.style_image, 128, "PNG"), style_image_jpeg=_jpeg(cfg.style_image, 512),
        tiling_exact=True,
    )
    return (store or ModelStore()).save(cfg.name, run.model, info, overwrite=overwrite)
