"""Loss networks: frozen VGG feature extractors with named ReLU taps.

Johnson, Alahi & Fei-Fei (2016), "Perceptual Losses for Real-Time Style Transfer and Super-Resolution", §3:
the loss network is VGG-16 pretrained on ImageNet (Simonyan & Zisserman 2015); feature reconstruction uses
relu2_2 (relu3_3 for style transfer in our offline setup), style reconstruction relu1_2, relu2_2, relu3_3,
relu4_3.

Two weight entries are known (torchvision's `Weights` enums are the model: preprocessing belongs to the
weights, not to the network):

* ``vgg16``: torchvision's VGG-16 (RGB, 0-1, ImageNet mean/std). Loaded from a file the user names or from
  torchvision's cache; downloaded only when the user asks for it (``download``).
* ``vgg19-partial``: the Oxford/Caffe VGG-19 conv1_1..conv3_4, shipped in the package (converted by
  :mod:`impasto.nets.vgg_tfjs`). Caffe preprocessing: BGR, 0-255, mean subtracted. No relu4_x exists.

Every network here takes RGB 0-255 float (B, 3, H, W), the project's image convention, and applies its
entry's preprocessing itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor, nn

from impasto.errors import ModelFileError, NotFound

# torchvision's VGG configs ("D" = 16 layers, "E" = 19); "M" is a 2x2 max-pool.
_CFG_VGG16: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
_CFG_VGG19: list[int | str] = [
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
]  # fmt: skip

VGG19_PARTIAL_FILE = "vgg19_partial.safetensors"
VGG16_TORCHVISION_FILE = "vgg16-397923af.pth"  # the name torchvision caches VGG16_Weights.IMAGENET1K_V1 under


@dataclass(frozen=True)
class LossNetWeights:
    """A weights entry: which architecture, which layers exist, and how its inputs must be prepared."""

    name: str
    cfg: tuple[int | str, ...]
    num_convs: int  # convolutions present in the weights (the partial VGG-19 stops at conv3_4)
    mean: tuple[float, float, float]  # in the network's own channel order and scale
    std: tuple[float, float, float]
    bgr: bool  # Caffe weights expect BGR
    scale: float  # multiply RGB 0-255 by this before mean/std (1/255 for torchvision, 1 for Caffe)
    default_content: str
    default_style: tuple[str, ...]
    license: str
    attribution: str


VGG16 = LossNetWeights(
    name="vgg16",
    cfg=tuple(_CFG_VGG16),
    num_convs=13,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    bgr=False,
    scale=1.0 / 255.0,
    default_content="relu2_2",  # the paper's choice
    default_style=("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
    license="CC BY 4.0 (weights), BSD-3-Clause (torchvision)",
    attribution="VGG-16, Simonyan & Zisserman 2015; weights via torchvision",
)

VGG19_PARTIAL = LossNetWeights(
    name="vgg19-partial",
    cfg=tuple(_CFG_VGG19),
    num_convs=8,
    mean=(103.939, 116.779, 123.68),  # BGR order, Caffe
    std=(1.0, 1.0, 1.0),
    bgr=True,
    scale=1.0,
    # relu2_2 alone reconstructs too literally for style work at this depth; relu3_3 is the deepest tap we have.
    default_content="relu3_3",
    default_style=("relu1_2", "relu2_2", "relu3_3"),
    license="CC BY 4.0 (weights, Simonyan & Zisserman); MIT (DavidCai1993/vgg19-tensorflowjs-model)",
    attribution="VGG-19 conv1_1..conv3_4, Simonyan & Zisserman 2015, via DavidCai1993/vgg19-tensorflowjs-model",
)

LOSS_NETS: dict[str, LossNetWeights] = {w.name: w for w in (VGG16, VGG19_PARTIAL)}


def layer_names(cfg: Sequence[int | str]) -> list[str]:
    """Names of the modules of `features` in order: conv1_1, relu1_1, ..., pool1, conv2_1, ..."""
    names: list[str] = []
    block, idx = 1, 1
    for v in cfg:
        if v == "M":
            names.append(f"pool{block}")
            block, idx = block + 1, 1
        else:
            names += [f"conv{block}_{idx}", f"relu{block}_{idx}"]
            idx += 1
    return names


def _make_features(cfg: Sequence[int | str], num_convs: int) -> tuple[nn.Sequential, list[str]]:
    # Module indices follow torchvision's `features`, so its state-dict keys ("features.N.weight") load as-is.
    layers: list[nn.Module] = []
    names: list[str] = []
    all_names = layer_names(cfg)
    convs, in_ch, i = 0, 3, 0
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            names.append(all_names[i])
            i += 1
            continue
        if convs == num_convs:
            break
        layers += [nn.Conv2d(in_ch, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
        names += all_names[i : i + 2]
        i += 2
        in_ch, convs = int(v), convs + 1
    # A partial net must not end on a pool that no conv follows.
    while names and names[-1].startswith("pool"):
        layers.pop()
        names.pop()
    return nn.Sequential(*layers), names


class LossNet(nn.Module):
    """A frozen VGG trunk returning the requested taps (dict name -> (B, C, H, W)).

    Input is RGB 0-255 float; the entry's preprocessing (channel order, scale, mean/std) is applied here.
    The trunk is cut after the deepest tap asked for at construction, so unused layers cost nothing."""

    def __init__(self, weights: LossNetWeights, taps: Iterable[str] | None = None) -> None:
        super().__init__()
        self.weights_entry = weights
        self.features, self.names = _make_features(weights.cfg, weights.num_convs)
        if taps is not None:
            taps = list(taps)
            missing = [t for t in taps if t not in self.names]
            if missing:
                raise NotFound(
                    f"loss network {weights.name} has no layer {', '.join(missing)}",
                    hint=f"available relu taps: {', '.join(n for n in self.names if n.startswith('relu'))}",
                )
            last = max(self.names.index(t) for t in taps)
            self.features = self.features[: last + 1]
            self.names = self.names[: last + 1]
        self.mean: Tensor
        self.std: Tensor
        self.register_buffer("mean", torch.tensor(weights.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(weights.std).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def preprocess(self, rgb255: Tensor) -> Tensor:
        x = rgb255 * self.weights_entry.scale
        if self.weights_entry.bgr:
            x = x.flip(1)
        return (x - self.mean) / self.std

    def forward(self, rgb255: Tensor, taps: Sequence[str]) -> dict[str, Tensor]:
        x = self.preprocess(rgb255)
        wanted = set(taps)
        out: dict[str, Tensor] = {}
        for name, layer in zip(self.names, self.features, strict=True):
            x = layer(x)
            if name in wanted:
                out[name] = x
                if len(out) == len(wanted):
                    break
        return out


def _shipped_vgg19_partial() -> Path:
    return Path(str(resources.files("impasto") / "data" / "loss_nets" / VGG19_PARTIAL_FILE))


def torchvision_cache_vgg16() -> Path:
    """Where torchvision keeps VGG16_Weights.IMAGENET1K_V1 once downloaded (it may not exist)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_TORCHVISION_FILE


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise NotFound(f"no loss-network weights at {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:  # a foreign .pth: tensors only, never pickled code
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or not a weight file
        raise ModelFileError(f"cannot read loss-network weights {path}: {exc}") from exc
    if not isinstance(sd, dict):
        raise ModelFileError(f"{path} does not hold a state dict")
    # Accept both a full torchvision VGG ("features.N.*", "classifier.*") and a bare trunk ("N.*").
    out = {}
    for k, v in sd.items():
        key = k[len("features.") :] if k.startswith("features.") else k
        if key.split(".")[0].isdigit():
            out[key] = v.float()
    return out


def _load_into(net: LossNet, sd: dict[str, Tensor], source: str) -> None:
    wanted = net.features.state_dict()
    missing = [k for k in wanted if k not in sd]
    if missing:
        raise ModelFileError(f"{source} lacks {len(missing)} tensors the loss network needs (e.g. {missing[0]})")
    for k, v in wanted.items():
        if sd[k].shape != v.shape:
            raise ModelFileError(f"{source}: {k} has shape {tuple(sd[k].shape)}, expected {tuple(v.shape)}")
    net.features.load_state_dict({k: sd[k] for k in wanted})


def load_loss_net(
    name: str = "vgg19-partial",
    taps: Iterable[str] | None = None,
    *,
    vgg16_weights: str | Path | None = None,
    device: torch.device | str = "cpu",
) -> LossNet:
    """Build and load a loss network by name (``vgg16`` or ``vgg19-partial``).

    For ``vgg16``, `vgg16_weights` is a .pth/.safetensors path, ``download`` (torchvision fetches its
    IMAGENET1K_V1 weights: the only case that touches the network), or None (torchvision's cache)."""
    if name not in LOSS_NETS:
        raise NotFound(f"unknown loss network {name!r}", hint=f"choose one of {', '.join(LOSS_NETS)}")
    entry = LOSS_NETS[name]
    net = LossNet(entry, taps)
    if name == "vgg19-partial":
        path = _shipped_vgg19_partial()
        if not path.is_file():
            raise ModelFileError(
                f"the packaged VGG-19 weights are missing ({path})",
                hint="reinstall impasto, or rebuild the file with `python -m impasto.nets.vgg_tfjs`",
            )
        _load_into(net, _read_state_dict(path), str(path))
    elif vgg16_weights == "download":
        from torchvision.models import VGG16_Weights

        sd = VGG16_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
        _load_into(net, {k.removeprefix("features."): v for k, v in sd.items()}, "torchvision VGG-16")
    else:
        path = Path(vgg16_weights) if vgg16_weights else torchvision_cache_vgg16()
        if not path.is_file():
            raise NotFound(
                f"VGG-16 weights not found at {path}",
                hint="pass --vgg16-weights PATH, or --vgg16-weights download to fetch torchvision's copy, "
                "or use --loss-net vgg19-partial (ships with impasto)",
            )
        _load_into(net, _read_state_dict(path), str(path))
    return net.to(device)
