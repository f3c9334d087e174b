"""LPIPS, the learned perceptual image patch similarity of Zhang, Isola, Efros, Shechtman & Wang (2018), "The
Unreasonable Effectiveness of Deep Features as a Perceptual Metric" (CVPR), version 0.1, SqueezeNet trunk.

The distance between two images is, summed over seven SqueezeNet 1.1 feature maps, the spatial mean of a learned
non-negative channel weighting of the squared difference of the unit-normalised features:

    d(x, y) = sum_l mean_hw( w_l . (f_l(x)/|f_l(x)| - f_l(y)/|f_l(y)|)^2 )

0 means identical; the published model's values on natural image pairs lie roughly in 0..1 (lower is closer).

Weights ship with the package (``impasto/data/loss_nets/lpips_squeeze.safetensors``, fp16, made by
:mod:`impasto.train.lpips_convert`): the ImageNet SqueezeNet 1.1 features (torchvision's weights) and the seven
linear heads of the ``lpips`` package v0.1. Nothing is downloaded at run time.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from impasto.errors import ModelFileError

LPIPS_SQUEEZE_FILE = "lpips_squeeze.safetensors"
# Feature maps the heads read: after the first ReLU, then after fire 2, 4, 5, 6, 7, 8 (indices into `features`).
TAPS = (1, 4, 7, 9, 10, 11, 12)
TAP_CHANNELS = (64, 128, 256, 384, 384, 512, 512)
# LPIPS v0.1 input scaling: images in [-1, 1], then this per-channel shift and scale (RGB).
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
MIN_SIDE = 32  # smaller images pool down to nothing before the deepest tap


class Fire(nn.Module):
    """SqueezeNet's fire module (Iandola et al. 2016): a 1x1 squeeze, then 1x1 and 3x3 expands side by side."""

    def __init__(self, cin: int, squeeze: int, expand: int):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, expand, 1)
        self.expand3x3 = nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        s = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.expand1x1(s)), F.relu(self.expand3x3(s))], 1)


def squeezenet1_1_features() -> nn.Sequential:
    """SqueezeNet 1.1's feature layers (no classifier), indexed as torchvision's ``features`` so the same
    state-dict keys fit. Max-pools round up (ceil mode), as the ImageNet weights were trained with."""

    def pool() -> nn.Module:
        return nn.MaxPool2d(3, 2, ceil_mode=True)

    return nn.Sequential(
        nn.Conv2d(3, 64, 3, stride=2), nn.ReLU(inplace=True), pool(),
        Fire(64, 16, 64), Fire(128, 16, 64), pool(),
        Fire(128, 32, 128), Fire(256, 32, 128), pool(),
        Fire(256, 48, 192), Fire(384, 48, 192), Fire(384, 64, 256), Fire(512, 64, 256),
    )  # fmt: skip


class LPIPS(nn.Module):
    """LPIPS v0.1 with the SqueezeNet 1.1 trunk. Inputs: RGB 0-255 float (B, 3, H, W); output (B,) distances."""

    shift: Tensor
    scale: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.features = squeezenet1_1_features()
        self.lin = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in TAP_CHANNELS)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def taps(self, x: Tensor) -> list[Tensor]:
        x = (x / 127.5 - 1.0 - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAPS:
                out.append(x)
        return out

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        d = a.new_zeros(a.shape[0])
        for fa, fb, lin in zip(self.taps(a), self.taps(b), self.lin, strict=True):
            # unit length along channels (eps as the reference, 1e-10, so values match it)
            fa = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            fb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            d = d + lin((fa - fb).pow(2)).mean((1, 2, 3))
        return d


def default_weights_path() -> Path:
    return Path(str(resources.files("impasto") / "data" / "loss_nets" / LPIPS_SQUEEZE_FILE))


def load_lpips(path: str | Path | None = None, device: str | torch.device = "cpu") -> LPIPS:
    """The LPIPS-squeeze network with the shipped weights (or those in `path`), in float32 on `device`."""
    from safetensors.torch import load_file

    path = Path(path) if path else default_weights_path()
    if not path.is_file():
        raise ModelFileError(f"{path}: LPIPS weights missing", hint="reinstall impasto, or rebuild the file with "
                             "`python -m impasto.train.lpips_convert` (see the README beside it)")
    net = LPIPS()
    sd = {k: v.float() for k, v in load_file(str(path)).items()}
    try:
        net.load_state_dict(sd)
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: not an LPIPS-squeeze weights file: {str(exc).splitlines()[0]}") from None
    return net.to(device)


class LPIPSMetric:
    """LPIPS on 8-bit RGB arrays (H, W, 3), loading the network once. Images under MIN_SIDE px give None."""

    def __init__(self, device: str | torch.device = "cpu", path: str | Path | None = None):
        self.device = torch.device(device)
        self.net = load_lpips(path, self.device)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> float | None:
        if a.shape != b.shape:
            raise ValueError(f"LPIPS needs equal shapes, got {a.shape} and {b.shape}")
        if min(a.shape[:2]) < MIN_SIDE:
            return None
        ta, tb = (torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).permute(2, 0, 1)[None].to(self.device)
                  for v in (a, b))
        with torch.no_grad():
            return float(self.net(ta, tb)[0])
