"""What a model file says about itself (spandrel-style descriptor), independent of how it loads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


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
