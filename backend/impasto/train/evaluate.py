"""Super-resolution evaluation as in the SR literature and Johnson et al. (2016) Table 1: PSNR and SSIM on the
luma (Y, ITU-R BT.601, 16-235) channel, ignoring `scale` pixels at each border; beside them LPIPS (Zhang et al.
2018, v0.1, SqueezeNet trunk: :mod:`impasto.train.lpips`) on the RGB images with the same border removed.

Folders hold either pairs (``*_HR.png`` with ``*_LR.png``, the LR made with MATLAB's bicubic imresize, as in
the usual Set5/Set14 x4 files) or HR images only, whose LR is made here: HR cropped to a multiple of the scale,
then bicubic downsampled with antialiasing (Pillow's BICUBIC filter widens with the scale like MATLAB's).
Bicubic upscaling uses Pillow's BICUBIC (a = -0.5, as MATLAB); it reproduces the paper's x4 bicubic baselines,
28.43 dB on Set5 and 25.99 dB on Set14. Single-channel files are measured on their grey values (0-255), as
the usual MATLAB evaluation scripts do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from impasto.device import channels_last_pays
from impasto.errors import InvalidArgument, NotFound
from impasto.train.common import IMAGE_SUFFIXES, split_held_out

Upscaler = Callable[[np.ndarray, int], np.ndarray]  # (h, w, 3) uint8, scale -> (h*s, w*s, 3) uint8


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of 8-bit RGB, in [16, 235], float64, unrounded (as MATLAB's rgb2ycbcr on doubles)."""
    x = rgb.astype(np.float64)
    return 16.0 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255.0


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak**2 / mse)


def _gauss_filter_valid(x: np.ndarray, size: int = 11, sigma: float = 1.5) -> np.ndarray:
    t = np.arange(size) - (size - 1) / 2
    k = np.exp(-(t**2) / (2 * sigma**2))
    k /= k.sum()
    # separable 'valid' correlation, as MATLAB's filter2(w, x, 'valid') in Wang et al.'s ssim_index.m
    rows = np.stack([x[:, i : i + x.shape[1] - size + 1] for i in range(size)], 0)
    x = np.tensordot(k, rows, axes=(0, 0))
    cols = np.stack([x[i : i + x.shape[0] - size + 1, :] for i in range(size)], 0)
    return np.tensordot(k, cols, axes=(0, 0))


def ssim(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """Mean SSIM (Wang, Bovik, Sheikh & Simoncelli 2004): 11x11 Gaussian window σ 1.5, K1 0.01, K2 0.03."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu_a, mu_b = _gauss_filter_valid(a), _gauss_filter_valid(b)
    s_aa = _gauss_filter_valid(a * a) - mu_a**2
    s_bb = _gauss_filter_valid(b * b) - mu_b**2
    s_ab = _gauss_filter_valid(a * b) - mu_a * mu_b
    m = ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (s_aa + s_bb + c2))
    return float(m.mean())


def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _is_gray_file(path: Path) -> bool:
    with Image.open(path) as im:
        return im.mode in ("L", "I;16", "I", "1")


def find_pairs(folder: str | Path, scale: int, held_out: int = 0) -> list[tuple[str, np.ndarray, np.ndarray, bool]]:
    """(name, HR, LR, single-channel) for every image under `folder`: pairs as given, HR-only images degraded
    here. Single-channel files are read as grey RGB and flagged (see `evaluate`). With `held_out` = K, only the
    photos that training with `--hold-out K` kept out (the same selection rule, `split_held_out`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotFound(f"{folder}: no such folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if held_out:
        files = split_held_out(files, held_out)[1]
    out = []
    for p in files:
        stem = p.stem
        if stem.endswith("_LR"):
            continue
        hr, gray = _read_rgb(p), _is_gray_file(p)
        if stem.endswith("_HR"):
            lr_path = p.with_name(stem[:-3] + "_LR" + p.suffix)
            if lr_path.is_file():
                lr = _read_rgb(lr_path)
                if lr.shape[0] * scale != hr.shape[0] or lr.shape[1] * scale != hr.shape[1]:
                    raise InvalidArgument(f"{lr_path.name} is not 1/{scale} the size of {p.name}",
                                          hint="pass the --scale these pairs were made for")
                out.append((stem[:-3], hr, lr, gray))
                continue
        h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
        hr = hr[:h, :w]
        lr = np.asarray(Image.fromarray(hr).resize((w // scale, h // scale), Image.Resampling.BICUBIC))
        out.append((stem, hr, lr, gray))
    if not out:
        raise InvalidArgument(f"{folder}: no images to evaluate", hint="expected *_HR.png/*_LR.png pairs or photos")
    return out


def bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    h, w = lr.shape[:2]
    return np.asarray(Image.fromarray(lr).resize((w * scale, h * scale), Image.Resampling.BICUBIC))


def network_upscaler(model: torch.nn.Module, device: str | torch.device = "cpu") -> Upscaler:
    """Wrap an SR network (LR RGB 0-255 -> HR RGB 0-255 tensors) as an Upscaler; output rounded to 8 bits."""
    model = model.to(device).eval()
    if channels_last_pays(torch.device(device), stepped_plan=False):
        model = model.to(memory_format=torch.channels_last)

    def up(lr: np.ndarray, scale: int) -> np.ndarray:
        x = torch.from_numpy(lr.astype(np.float32)).permute(2, 0, 1)[None].to(device)
        with torch.no_grad():
            y = model(x)
        if y.shape[-2:] != (lr.shape[0] * scale, lr.shape[1] * scale):
            raise InvalidArgument(f"the model upscales x{y.shape[-1] // lr.shape[1]}, not x{scale}")
        return y[0].clamp(0, 255).round().byte().permute(1, 2, 0).cpu().numpy()

    return up


@dataclass
class EvalResult:
    folder: str
    scale: int
    method: str
    images: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def _mean(self, key: str) -> float | None:
        values = [float(x) for v in self.images.values() if (x := v.get(key)) is not None]
        return float(np.mean(values)) if values else None

    def _mean_or_nan(self, key: str) -> float:
        m = self._mean(key)
        return float("nan") if m is None else m

    @property
    def psnr(self) -> float:
        return self._mean_or_nan("psnr")

    @property
    def ssim(self) -> float:
        return self._mean_or_nan("ssim")

    @property
    def lpips(self) -> float | None:
        """Mean LPIPS over the images that have it (None: not measured, or every image too small)."""
        return self._mean("lpips")

    def to_json(self) -> dict:
        return {"folder": self.folder, "scale": self.scale, "method": self.method, "psnr": self.psnr,
                "ssim": self.ssim, "lpips": self.lpips, "images": self.images}


def evaluate(folder: str | Path, scale: int, upscale: Upscaler | None = None, method: str = "bicubic",
             progress: Callable[[str, float], None] | None = None, lpips: bool = True,
             device: str | torch.device = "cpu", held_out: int = 0) -> EvalResult:
    """PSNR/SSIM (Y channel, border `scale` cropped) and LPIPS (RGB, same crop; unless `lpips` is False) of
    `upscale` (default bicubic) over a folder."""
    upscale = upscale or bicubic
    metric = None
    if lpips:
        from impasto.train.lpips import LPIPSMetric

        metric = LPIPSMetric(device)
    pairs = find_pairs(folder, scale, held_out)
    res = EvalResult(str(folder), scale, method)
    for i, (name, hr, lr, gray) in enumerate(pairs):
        sr = upscale(lr, scale)
        b = scale
        y_hr, y_sr = rgb_to_y(hr)[b:-b, b:-b], rgb_to_y(sr)[b:-b, b:-b]
        if gray:
            # The standard MATLAB scripts measure a single-channel image on its grey values (0-255), not on
            # 16-235 luma: Set14's one greyscale file is why its bicubic baseline reads 25.99 and not 26.09.
            y_hr, y_sr = (y_hr - 16.0) * (255.0 / 219.0), (y_sr - 16.0) * (255.0 / 219.0)
        res.images[name] = {"psnr": psnr(y_hr, y_sr), "ssim": ssim(y_hr, y_sr)}
        if metric is not None:
            res.images[name]["lpips"] = metric(hr[b:-b, b:-b], sr[b:-b, b:-b])
        if progress is not None:
            progress("eval", (i + 1) / len(pairs))
    return res
