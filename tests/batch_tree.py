"""The input tree and the output checks that the batch tests share (tests/unit/test_batch.py for the local
pool, tests/integration/test_batch_ray.py for Ray); importable because tests/conftest.py puts tests/ on the path."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from impasto.batch.job import MANIFEST_NAME, BatchJob, read_manifest
from impasto.engine.engine import EngineConfig
from impasto.engine.imageio import write_image
from impasto.engine.pixels import PixelBuffer
from PIL import Image

CONFIG = EngineConfig(device="cpu", bf16=False, max_pixels=5_000)
STYLE = BatchJob("stylize", {"style": "wave"}, CONFIG)
GOOD = ["a.png", "b.jpg", "c.png", "deep/er/e.png", "sub/d.tif"]


def make_tree(root: Path) -> Path:
    """Tiny images in nested folders, a 16-bit TIFF, a corrupt file, one too big for max_pixels, and noise."""
    rng = np.random.default_rng(0)
    src = root / "in"
    for rel, size in [("a.png", (24, 20)), ("b.jpg", (32, 24)), ("c.png", (20, 20)), ("deep/er/e.png", (28, 24))]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(src / rel)
    arr = (rng.random((16, 20, 3)) * 65535).astype(np.uint16)
    write_image(src / "sub" / "d.tif", PixelBuffer.from_array(arr))
    (src / "broken.png").write_bytes(b"\x89PNG not really")
    Image.new("RGB", (80, 80)).save(src / "huge.png")  # over max_pixels: an engine error, not a read error
    (src / "notes.txt").write_text("not an image")
    (src / ".hidden.png").write_bytes(b"ignored")
    return src


def stats(out: Path) -> dict[str, tuple[int, int]]:
    """Every file under `out` but the manifest, with (inode, mtime): a rewritten file shows as changed."""
    return {p.relative_to(out).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in out.rglob("*") if p.is_file() and p.name != MANIFEST_NAME}


def done_counts(manifest: Path) -> Counter[str]:
    return Counter(r["input"] for r in read_manifest(manifest) if r["status"] == "done")
