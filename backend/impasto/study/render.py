"""Studies whose images the Engine renders: SR models against each other (and bicubic), and styles — a
feed-forward network, the same refined by Gatys iterations, or Gatys optimisation from the model's own style
image — over a set of photos. The photo is kept as the reference shown above each pair."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from impasto.cancel import Progress, no_progress
from impasto.engine.engine import Engine
from impasto.engine.pixels import PixelBuffer
from impasto.errors import InvalidArgument, NotFound
from impasto.study.design import IMAGE_SUFFIXES, Study, check_name, create

_SPEC = re.compile(r"^(?:(?P<label>[^=:]+)=)?(?P<model>[^:=]+)(?::(?P<op>refine|gatys)=(?P<n>\d+))?$")


@dataclass(frozen=True)
class StyleMethod:
    """One style method: `model` feed-forward, then `refine` Gatys iterations; or `gatys` iterations instead."""

    label: str
    model: str
    refine: int = 0
    gatys: int = 0


def parse_style_spec(spec: str) -> StyleMethod:
    """``[LABEL=]MODEL[:refine=N|:gatys=N]``, e.g. ``starry-night``, ``ff=wave``, ``opt=wave:gatys=100``."""
    m = _SPEC.match(spec.strip())
    if not m:
        raise InvalidArgument(f"cannot read the style method {spec!r}",
                              hint="write [LABEL=]MODEL[:refine=N|:gatys=N], e.g. opt=starry-night:gatys=100")
    op, n = m["op"], int(m["n"] or 0)
    label = m["label"] or (m["model"] if not op else f"{m['model']}-{op}{n}")
    return StyleMethod(check_name(label, "method name"), m["model"], n if op == "refine" else 0,
                       n if op == "gatys" else 0)


def find_photos(paths: Sequence[str | Path]) -> list[Path]:
    """Image files among `paths`, folders expanded (sorted); stems must be unique."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise NotFound(f"{p}: no such photo or folder")
    stems = [p.stem for p in out]
    if not out:
        raise InvalidArgument("no photos", hint=f"give image files or folders of them ({', '.join(IMAGE_SUFFIXES)})")
    if len(set(stems)) != len(stems):
        raise InvalidArgument("two photos share a name; the study matches images by file name")
    return out


def _read(path: Path, size: int | None) -> np.ndarray:
    with Image.open(path) as f:
        im = f.convert("RGB")
    if size:
        k = size / max(im.size)
        im = im.resize((max(1, round(im.width * k)), max(1, round(im.height * k))), Image.Resampling.LANCZOS)
    return np.asarray(im)


def _save(arr: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def render_sr(out: str | Path, models: Sequence[str], photos: Sequence[str | Path], *, scale: int = 4,
              size: int | None = None, engine: Engine | None = None, progress: Progress | None = None,
              **kw: Any) -> Study:
    """SR models (store names, or ``bicubic``) on photos degraded here: each photo (long side `size` if given)
    cropped to a multiple of `scale` and shrunk with Pillow's bicubic, as `impasto eval sr` does; the photo
    itself is the reference."""
    engine = engine or Engine()
    progress = progress or no_progress
    files = find_photos(photos)
    labels = [check_name(m, "method name") for m in models]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        made: dict[str, dict[str, Path]] = {m: {} for m in labels}
        ref: dict[str, Path] = {}
        for i, path in enumerate(files):
            hr = _read(path, size)
            h, w = hr.shape[0] // scale * scale, hr.shape[1] // scale * scale
            hr = np.ascontiguousarray(hr[:h, :w])
            lr = np.asarray(Image.fromarray(hr).resize((w // scale, h // scale), Image.Resampling.BICUBIC))
            ref[path.stem] = _save(hr, root / "reference" / f"{path.stem}.png")
            for m in labels:
                up = engine.upscale(PixelBuffer.from_array(lr), scale, model=m).array
                made[m][path.stem] = _save(up, root / m / f"{path.stem}.png")
            progress("render", (i + 1) / len(files))
        kw.setdefault("title", f"Super-resolution x{scale}")
        kw.setdefault("question", "Which image is closer to the reference, or looks more natural?")
        return create(out, made, ref, **kw)


def render_styles(out: str | Path, specs: Sequence[str], photos: Sequence[str | Path], *, size: int | None = 512,
                  engine: Engine | None = None, progress: Progress | None = None, **kw: Any) -> Study:
    """Style methods (see :func:`parse_style_spec`) on photos (long side `size`); the photo is the reference."""
    engine = engine or Engine()
    progress = progress or no_progress
    methods = [parse_style_spec(s) for s in specs]
    if len({m.label for m in methods}) != len(methods):
        raise InvalidArgument("two style methods have the same label", hint="name them: LABEL=MODEL[:...]")
    files = find_photos(photos)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        made: dict[str, dict[str, Path]] = {m.label: {} for m in methods}
        ref: dict[str, Path] = {}
        for i, path in enumerate(files):
            rgb = _read(path, size)
            photo = PixelBuffer.from_array(rgb)
            ref[path.stem] = _save(rgb, root / "reference" / f"{path.stem}.png")
            for m in methods:
                if m.gatys:
                    out_img = engine.gatys(photo, _style_image(engine, m.model), iterations=m.gatys,
                                           max_size=max(rgb.shape[:2]))
                else:
                    out_img = engine.stylize(photo, m.model, refine=m.refine)
                made[m.label][path.stem] = _save(out_img.array, root / m.label / f"{path.stem}.png")
            progress("render", (i + 1) / len(files))
        kw.setdefault("title", "Style transfer")
        return create(out, made, ref, **kw)


def _style_image(engine: Engine, model: str) -> PixelBuffer:
    import io

    info = engine.store.get(model, "style")
    if not info.style_image_jpeg:
        raise InvalidArgument(f"style {model!r} carries no style image, so Gatys cannot use it")
    with Image.open(io.BytesIO(info.style_image_jpeg)) as f:
        return PixelBuffer.from_array(np.asarray(f.convert("RGB")))
