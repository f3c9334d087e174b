"""Maintainers' script: ship a network trained with `impasto train` as a bundled model.

    python -m impasto.models.ship MODEL NAME

MODEL is a model file (.safetensors written by the trainer) or a user-store name; NAME the bundled name
(backend/impasto/data/models/NAME.safetensors, replaced if present). The trainer's descriptor says
"user-trained" and points at a scratch run folder; a shipped model needs a licence, an attribution naming the
artwork and the data, a display name, a preview thumbnail like the other bundled models (a style applied to
the bundled chelsea photo; SR: a crop of the coffee photo reduced then upscaled) and, for a style, the artwork
at <= 256 px for --refine. The embedded training config is kept and points at the model card
(docs/models/NAME.md), which records the commands, iterations, wall time and hardware; its paths are cut to
their last component (a shipped file must not carry the trainer's folder layout).

    python -m impasto.models.ship --strip-paths

rewrites the bundled files' descriptors that way in place, leaving the tensor bytes as they are."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from PIL import Image

from impasto.models.bundle import SAMPLES_DIR, _jpeg, _thumbnail
from impasto.models.fileformat import build_network, load_state, read_info, save_model
from impasto.models.info import strip_paths
from impasto.models.store import BUNDLED_DIR, user_home

DATA = "T91 (Yang et al. 2010) + BSD200 (Berkeley Segmentation Dataset train set), research use; not shipped"
VGG = "loss network VGG-19 conv1_1-conv3_4 (Simonyan & Zisserman, CC BY 4.0)"
STYLES = {  # bundled name -> (display name, artwork)
    "starry-night": ("The Starry Night (ours)", "Vincent van Gogh, The Starry Night (1889)"),
    "composition-vii": ("Composition VII (ours)", "Wassily Kandinsky, Composition VII (1913)"),
    "woman-with-a-hat": ("Woman with a Hat (ours)", "Henri Matisse, Woman with a Hat (1905)"),
    "great-wave": ("The Great Wave (ours)", "Katsushika Hokusai, The Great Wave off Kanagawa (c. 1831)"),
}


def _source(model: str) -> Path:
    path = Path(model)
    if path.suffix == ".safetensors" and path.is_file():
        return path
    path = user_home() / "models" / f"{model}.safetensors"
    if not path.is_file():
        raise SystemExit(f"{model}: neither a model file nor a model in {path.parent}")
    return path


def ship(model: str, name: str) -> Path:
    info, state = read_info(_source(model)), load_state(_source(model))
    net = build_network(info, state).eval()
    info.name = name
    if info.training is not None:
        info.training = strip_paths(info.training)
        info.training["recipe"] = f"docs/models/{name}.md"  # the embedded config is the last run's; the card has all
    info.license = "MIT"
    info.source = f"trained for Impasto with `impasto train {info.kind}` (docs/models/{name}.md)"
    if info.kind == "style":
        if name not in STYLES:
            raise SystemExit(f"{name}: add its display name and artwork to STYLES in {__file__}")
        title, artwork = STYLES[name]
        info.display_name = title
        info.description = (f"Feed-forward style network for {artwork} (public domain artwork), trained by the "
                            "Impasto project on a 2-core CPU at reduced size (docs/models.md).")
        info.attribution = (f"Impasto project, trained with impasto train style; style image: {artwork}, public "
                            f"domain; content photos: {DATA}; {VGG}")
        info.thumbnail_png = _thumbnail(net, Image.open(SAMPLES_DIR / "chelsea.png"))
        if info.style_image_jpeg:  # the artwork at <= 256 px like the other bundled styles
            info.style_image_jpeg = _jpeg(Image.open(io.BytesIO(info.style_image_jpeg)), 256)
    else:
        loss = (info.training or {}).get("loss", "?")
        info.display_name = f"Impasto x{info.scale} ({'feature' if loss == 'feat' else 'pixel'} loss)"
        info.description = (f"x{info.scale} super-resolution (Johnson et al. 2016, {loss} loss, residual over "
                            "bicubic), trained by the Impasto project on a 2-core CPU (docs/models.md).")
        info.attribution = (f"Impasto project, trained with impasto train sr on {DATA}"
                            + (f"; {VGG}" if loss == "feat" else ""))
        coffee = Image.open(SAMPLES_DIR / "coffee.png").convert("RGB")
        side = 96 // info.scale
        crop = coffee.crop((120, 60, 216, 156)).resize((side, side), Image.Resampling.BICUBIC)
        info.thumbnail_png = _thumbnail(net, crop, side)  # a 96 px upscale of the reduced crop
    return save_model(BUNDLED_DIR / f"{name}.safetensors", state, info)


def rewrite_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Replace the `__metadata__` of a safetensors file. The format is an 8-byte length, a JSON header (tensor
    offsets are relative to the end of it) and the tensor bytes, which are copied as they are."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the header is padded to 8 bytes, as safetensors writes it
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n :])
    tmp.replace(path)


def strip_bundled_paths(folder: Path = BUNDLED_DIR) -> list[Path]:
    """Cut the absolute paths in every bundled descriptor (training config, source); the files changed."""
    from safetensors import safe_open

    changed = []
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata())
        d = json.loads(meta["impasto"])
        clean = d | {"training": strip_paths(d.get("training")), "source": strip_paths(d.get("source", ""))}
        if clean != d:
            rewrite_metadata(path, meta | {"impasto": json.dumps(clean)})
            changed.append(path)
    return changed


def main(argv: list[str]) -> int:
    if argv == ["--strip-paths"]:
        for path in strip_bundled_paths():
            print(f"rewrote {path}")
        return 0
    if len(argv) != 2:
        print(__doc__)
        return 2
    print(f"bundled {ship(argv[0], argv[1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
