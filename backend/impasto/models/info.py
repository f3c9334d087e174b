"""What a model file says about itself (spandrel-style descriptor), independent of how it loads.

A descriptor comes from a file anyone may have written, and every client sees it (ListModels sends it whole), so
`validate` holds each field to its type and range before the store lists the model: one bad file is skipped
and reported, never an error for everyone. `strip_paths` keeps a trainer's folder layout out of shared files."""

from __future__ import annotations

import io
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from impasto.errors import ModelFileError

NAME_RULE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
SCALES = {"style": (1,), "sr": (2, 4, 8)}  # what each kind may say; the SR networks are built for these
TEXT_LIMITS = {"name": 64, "kind": 8, "arch": 32, "display_name": 128, "description": 4000, "license": 256,
               "attribution": 4000, "source": 1000, "sha256": 64}  # characters
JSON_LIMITS = {"params": 4 << 10, "training": 64 << 10}  # bytes of JSON
THUMBNAIL_LIMIT, THUMBNAIL_SIDE = 256 << 10, 512  # bytes, pixels; a preview list of 60 still fits a message
STYLE_IMAGE_LIMIT, STYLE_IMAGE_SIDE = 1 << 20, 1024
HEADER_LIMIT = 4 << 20  # a safetensors header (the descriptor, images in base64, the tensor index), bytes


@dataclass
class ModelInfo:
    name: str
    kind: str  # "style" | "sr"
    arch: str  # "johnson" | "engstrom" | "johnson_sr" | "srgan"
    scale: int = 1
    display_name: str = ""
    description: str = ""
    license: str = ""
    attribution: str = ""
    source: str = ""
    sha256: str = ""
    params: dict[str, Any] = field(default_factory=dict)  # architecture hyperparameters
    training: dict[str, Any] | None = None  # training config when we trained it
    thumbnail_png: bytes | None = None  # small preview
    style_image_jpeg: bytes | None = None  # the style image (<= 512 px), for Gatys refinement
    tiling_exact: bool = True
    bundled: bool = False
    path: Path | None = None

    def to_json(self) -> dict[str, Any]:
        """Everything but the binary images and the path (for `models list --json` and file metadata)."""
        d = asdict(self)
        for key in ("thumbnail_png", "style_image_jpeg", "path"):
            d.pop(key)
        d["has_thumbnail"] = self.thumbnail_png is not None
        d["has_style_image"] = self.style_image_jpeg is not None
        return d


def _image_problem(data: object, limit: int, side: int, formats: tuple[str, ...]) -> str | None:
    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, bytes):
        return f"is a {type(data).__name__}, not image bytes"
    if len(data) > limit:
        return f"is {len(data):,} bytes, over the limit of {limit:,}"
    try:
        with Image.open(io.BytesIO(data), formats=formats) as im:  # the header only: no pixels decoded
            w, h = im.size
    except Image.DecompressionBombError:  # Pillow's own check, where the image module has not lifted it
        return f"claims hundreds of millions of pixels, over the limit of {side}x{side} pixels"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return f"is not a {' or '.join(formats)} image"
    if w > side or h > side:
        return f"is {w}x{h} pixels, over the limit of {side}x{side}"
    return None


def validate(info: ModelInfo, label: str) -> ModelInfo:
    """`info` if every field has its type and range; otherwise ModelFileError naming the field (`label`: the file).

    Types first (a file may say `name: 123` or `scale: "x"`), then ranges: the name rule, the scales of the
    kind, the lengths of strings and JSON, the bytes and pixels of the embedded images."""

    def bad(what: str) -> ModelFileError:
        return ModelFileError(f"{label}: {what}", hint="re-import, re-download or re-train the model")

    for key, limit in TEXT_LIMITS.items():
        value = getattr(info, key)
        if not isinstance(value, str):
            raise bad(f"{key} is a {type(value).__name__}, not text")
        if len(value) > limit:
            raise bad(f"{key} is {len(value):,} characters, over the limit of {limit:,}")
    if not NAME_RULE.match(info.name):
        raise bad(f"invalid model name {info.name[:64]!r}: use 1-64 lowercase letters, digits, '-', '_' or '.'")
    if info.kind not in SCALES:
        raise bad(f"unknown model kind {info.kind!r}; expected style or sr")
    if type(info.scale) is not int or info.scale not in SCALES[info.kind]:
        raise bad(f"scale {str(info.scale)[:20]!r} is not one of {', '.join(map(str, SCALES[info.kind]))} "
                  f"for a {info.kind} model")
    if not isinstance(info.tiling_exact, bool):
        raise bad(f"tiling_exact is a {type(info.tiling_exact).__name__}, not true or false")
    for key, limit in JSON_LIMITS.items():
        value = getattr(info, key)
        if value is None and key == "training":
            continue
        if not isinstance(value, dict):
            raise bad(f"{key} is a {type(value).__name__}, not an object")
        try:
            size = len(json.dumps(value))
        except (TypeError, ValueError, RecursionError):
            raise bad(f"{key} is not plain JSON") from None
        if size > limit:
            raise bad(f"{key} is {size:,} bytes of JSON, over the limit of {limit:,}")
    for key, limit, side, formats in (("thumbnail_png", THUMBNAIL_LIMIT, THUMBNAIL_SIDE, ("PNG",)),
                                      ("style_image_jpeg", STYLE_IMAGE_LIMIT, STYLE_IMAGE_SIDE, ("JPEG", "PNG"))):
        value = getattr(info, key)
        if value is not None and (problem := _image_problem(value, limit, side, formats)):
            raise bad(f"{key} {problem}")
    return info


def _is_absolute(text: str) -> bool:
    return (text.startswith(("/", "~", "\\")) or PureWindowsPath(text).is_absolute()
            or ".." in PurePosixPath(text.replace("\\", "/")).parts)


def strip_paths(value: Any) -> Any:
    """`value` (a training config: dicts, lists, strings) with every absolute path, home-relative path or path
    that climbs out (`..`) cut to its last component: `/home/ann/data/starry.jpg` -> `starry.jpg`. A model file
    travels; the folder layout of the machine it was trained on must not travel with it. Relative paths inside
    the run (`docs/models/x.md`) are kept."""
    if isinstance(value, dict):
        return {k: strip_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strip_paths(v) for v in value]
    if isinstance(value, str) and _is_absolute(value):
        return PureWindowsPath(value).name if "\\" in value else PurePosixPath(value).name
    return value
