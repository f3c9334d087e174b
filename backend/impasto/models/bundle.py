"""Maintainers' script: build the models that ship in backend/impasto/data/models from ../shared/data.

    python -m impasto.models.bundle ../shared/data

Converts the four public-domain ml5 styles (MIT) and the SRGAN x2/x4/x8 generators (MIT) to fp16
safetensors with their descriptor, a preview thumbnail (the style applied to a bundled sample photo)
and, for styles, the artwork itself at <= 256 px (for Gatys refinement). Also copies small sample photos
(public domain / CC0) into data/samples. The product never reads ../shared at run time."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from impasto.models.convert import convert
from impasto.models.fileformat import build_network, save_model
from impasto.models.store import BUNDLED_DIR

SAMPLES_DIR = BUNDLED_DIR.parent / "samples"
ML5_ATTR = "Network by Logan Engstrom (fast-style-transfer) / ml5.js contributors; ml5js/ml5-data-and-models, MIT"
STYLES = {
    "scream": ("The Scream", "Edvard Munch, The Scream (1893)", "the_scream.jpg"),
    "wave": ("The Great Wave", "Hokusai, The Great Wave off Kanagawa (c. 1831)", "wave.jpg"),
    "wreck": ("Shipwreck of the Minotaur", "J. M. W. Turner, The Shipwreck of the Minotaur (c. 1810)",
              "the_shipwreck_of_the_minotaur.jpg"),
    "udnie": ("Udnie", "Francis Picabia, Udnie (1913)", "udnie.jpg"),
}
SAMPLES = {  # file -> (max side, licence)
    "chelsea.png": (300, "CC0 (photographer Stefan van der Walt), from scikit-image's sample data"),
    "astronaut.png": (256, "public domain (NASA), from scikit-image's sample data"),
    "coffee.png": (300, "CC0 (photographer Rachel Michetti, courtesy of Pikolo Espresso Bar), scikit-image"),
}


def _jpeg(im: Image.Image, side: int, quality: int = 85) -> bytes:
    im = im.convert("RGB")
    im.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _png(arr: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr).save(out, "PNG", optimize=True)
    return out.getvalue()


def _thumbnail(net: torch.nn.Module, photo: Image.Image, side: int = 96) -> bytes:
    im = photo.convert("RGB")
    im.thumbnail((side, side), Image.Resampling.LANCZOS)
    x = torch.from_numpy(np.asarray(im, dtype=np.float32).transpose(2, 0, 1).copy())[None]
    with torch.inference_mode():
        y = net(x).clamp(0, 255)[0].permute(1, 2, 0).numpy()
    return _png(np.rint(y).astype(np.uint8))


def main(argv: list[str]) -> int:
    data = Path(argv[0] if argv else "../shared/data")
    BUNDLED_DIR.mkdir(parents=True, exist_ok=True)
    SAMPLES_DIR.mkdir(parents=True, exist_ok=True)
    lines = ["# Sample photos shipped with Impasto", ""]
    for name, (side, licence) in SAMPLES.items():
        im = Image.open(data / "sample_photos" / name).convert("RGB")
        im.thumbnail((side, side), Image.Resampling.LANCZOS)
        im.save(SAMPLES_DIR / name, optimize=True)
        lines.append(f"- `{name}` (reduced to {im.size[0]}x{im.size[1]}): {licence}.")
    (SAMPLES_DIR / "README.md").write_text("\n".join(lines) + "\n")
    photo = Image.open(SAMPLES_DIR / "chelsea.png")

    for name, (title, artwork, image_file) in STYLES.items():
        state, info = convert(data / "weights/style_nets/ml5_engstrom" / name, name)
        net = build_network(info, state)
        info.display_name = title
        info.description = f"Feed-forward style network for {artwork} (public domain artwork)."
        info.license = "MIT"
        info.attribution = ML5_ATTR + f"; style image: {artwork}, public domain"
        info.source = f"ml5js/ml5-data-and-models models/style-transfer/{name} (converted)"
        info.thumbnail_png = _thumbnail(net, photo)
        info.style_image_jpeg = _jpeg(Image.open(data / "style_images/public_domain" / image_file), 256)
        save_model(BUNDLED_DIR / f"{name}.safetensors", state, info)
        print(f"bundled style {name}")

    lr = Image.open(data / "sr/eval_x4/Set5/image_SRF_4/img_001_SRF_4_LR.png").convert("RGB")
    for scale in (2, 4, 8):
        name = f"srgan-x{scale}"
        state, info = convert(data / f"weights/sr/srgan/netG_epoch_{scale}_100.pth", name)
        info.display_name = f"SRGAN x{scale}"
        info.description = f"SRGAN generator (Ledig et al. 2017), x{scale}, trained on VOC2012 by leftthomas/SRGAN."
        info.license = "MIT"
        info.attribution = f"leftthomas/SRGAN (MIT), generator weights netG_epoch_{scale}_100.pth"
        info.source = "leftthomas/SRGAN @ b0323c6ca4ca epochs/ (converted)"
        net = build_network(info, state)
        crop = lr.crop((40, 40, 40 + 96 // scale, 40 + 96 // scale))
        x = torch.from_numpy(np.asarray(crop, dtype=np.float32).transpose(2, 0, 1).copy())[None]
        with torch.inference_mode():
            y = net(x).clamp(0, 255)[0].permute(1, 2, 0).numpy()
        info.thumbnail_png = _png(np.rint(y).astype(np.uint8))
        save_model(BUNDLED_DIR / f"{name}.safetensors", state, info)
        print(f"bundled sr {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
