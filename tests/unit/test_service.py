"""The engine's operations on editor buffers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from impasto.cancel import CancelToken
from impasto.engine.engine import Engine, EngineConfig, luminance_transfer
from impasto.engine.pixels import PixelBuffer, PixelFormat
from impasto.errors import Cancelled, InvalidArgument, NotFound, ResourceExhausted


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(EngineConfig(device="cpu", bf16=False, max_pixels=200_000))


def _img(h: int, w: int, fmt: str = "RGBA_U8", seed: int = 0) -> PixelBuffer:
    f = PixelFormat.parse(fmt)
    rng = np.random.default_rng(seed)
    if f.is_float:
        arr = rng.random((h, w, f.channels)).astype(f.dtype)
    else:
        arr = rng.integers(0, np.iinfo(f.dtype).max, (h, w, f.channels)).astype(f.dtype)
    return PixelBuffer(arr, f)


@pytest.mark.parametrize("fmt", ["RGBA_U8", "BGRA_U16", "RGBA_F32_LINEAR", "RGB_U8", "RGBA_F16"])
def test_stylize_keeps_size_format_and_alpha(engine: Engine, fmt: str) -> None:
    img = _img(37, 45, fmt)
    out = engine.stylize(img, "wave")
    assert out.format == img.format and out.array.shape == img.array.shape
    if img.format.has_alpha:
        a = img.format.order.index("A")
        assert np.array_equal(out.array[:, :, a], img.array[:, :, a])
    rgb = [img.format.order.index(c) for c in "RGB"]
    assert np.abs(out.array[:, :, rgb].astype(np.float64) - img.array[:, :, rgb]).mean() > 0


def test_strength_zero_returns_the_original(engine: Engine) -> None:
    img = _img(24, 24)
    assert np.array_equal(engine.stylize(img, "scream", strength=0.0).array, img.array)


def test_strength_blends_linearly(engine: Engine) -> None:
    img = _img(24, 24, "RGB_U8")
    full = engine.stylize(img, "udnie").array.astype(np.float64)
    half = engine.stylize(img, "udnie", strength=0.5).array.astype(np.float64)
    assert np.abs(half - (full + img.array) / 2).max() <= 1.0


def test_preserve_colors_keeps_chroma(engine: Engine) -> None:
    import torch

    a = torch.rand(1, 3, 8, 8) * 255
    b = torch.rand(1, 3, 8, 8) * 255
    out = luminance_transfer(a, b)
    from impasto.engine.engine import _ycbcr

    ya, yb, yo = _ycbcr(a), _ycbcr(b), _ycbcr(out)
    inside = (out > 0.5).all(1) & (out < 254.5).all(1)  # unclipped pixels
    assert torch.allclose(yo[:, 0][inside], ya[:, 0][inside], atol=1e-2)
    assert torch.allclose(yo[:, 1:][:, :, inside[0]], yb[:, 1:][:, :, inside[0]], atol=1e-2)
    img = _img(20, 20, "RGB_U8")
    assert engine.stylize(img, "wave", preserve_colors=True).array.shape == img.array.shape


def test_processing_scale(engine: Engine) -> None:
    img = _img(40, 30, "RGB_U8")
    assert engine.stylize(img, "wave", scale=0.5).array.shape == img.array.shape


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_upscale_sizes_and_alpha(engine: Engine, scale: int) -> None:
    img = _img(9, 7, "BGRA_U16")
    img.array[:, :, 3] = 65535
    out = engine.upscale(img, scale)
    assert out.array.shape == (9 * scale, 7 * scale, 4) and out.format == img.format
    assert (out.array[:, :, 3] == 65535).all()  # opaque stays opaque


def test_upscale_bicubic_and_model_checks(engine: Engine) -> None:
    img = _img(8, 8, "RGB_U8")
    assert engine.upscale(img, 2, model="bicubic").array.shape == (16, 16, 3)
    with pytest.raises(InvalidArgument, match="x4, not x2"):
        engine.upscale(img, 2, model="srgan-x4")
    with pytest.raises(InvalidArgument, match="2, 4 or 8"):
        engine.upscale(img, 3)


def test_errors(engine: Engine) -> None:
    img = _img(8, 8)
    with pytest.raises(NotFound, match="available: .*scream"):
        engine.stylize(img, "monet")
    with pytest.raises(NotFound):
        engine.stylize(img, "srgan-x4")  # an SR model is not a style
    with pytest.raises(InvalidArgument, match="strength"):
        engine.stylize(img, "wave", strength=1.5)
    with pytest.raises(InvalidArgument, match="scale"):
        engine.stylize(img, "wave", scale=10)
    with pytest.raises(ResourceExhausted, match="over the limit of 200,000") as err:
        engine.stylize(_img(500, 500), "wave")
    assert err.value.hint and "--max-pixels" in err.value.hint


def test_cancel_between_tiles(shared: Path) -> None:
    engine = Engine(EngineConfig(device="cpu", bf16=False, memory_budget=1 << 20, tile_size=16))
    token = CancelToken()
    seen: list[float] = []

    def progress(stage: str, fraction: float) -> None:
        seen.append(fraction)
        if stage == "stylize" and fraction > 0.1:
            token.cancel()

    with pytest.raises(Cancelled):
        engine.stylize(_img(64, 64, "RGB_U8"), "wave", progress=progress, cancel=token)
    assert max(seen) < 0.5  # it stopped soon after the cancel, not at the end


def test_whole_image_progress_and_cancel_on_the_default_runtime(engine: Engine) -> None:
    # on a CPU the default runtime is OpenVINO where it loads; either way a whole image reports its start and
    # end, and a cancel that arrives once the run has started stops it
    seen: list[tuple[str, float]] = []
    engine.stylize(_img(32, 40, "RGB_U8"), "wave", progress=lambda s, f: seen.append((s, f)))
    assert ("stylize", 0.0) in seen and seen[-1] == ("stylize", 1.0)
    token = CancelToken()

    def progress(stage: str, fraction: float) -> None:
        if stage == "stylize":
            token.cancel()

    with pytest.raises(Cancelled):
        engine.stylize(_img(32, 40, "RGB_U8"), "wave", progress=progress, cancel=token)


def test_bicubic_upscale_is_the_standard_kernel() -> None:
    """--model bicubic is the a = -0.5 kernel `impasto eval sr` and the literature use, not torch's a = -0.75."""
    from impasto.train.evaluate import bicubic
    from PIL import Image

    samples = Path(__file__).parents[2] / "backend" / "impasto" / "data" / "samples"
    rgb = np.asarray(Image.open(samples / "chelsea.png").convert("RGB").resize((48, 32)))
    out = Engine(EngineConfig(device="cpu")).upscale(PixelBuffer.from_array(rgb), 4, model="bicubic").array
    want = bicubic(rgb, 4).astype(float)  # Pillow's 8-bit path rounds between its two passes, ours does not
    ours = np.abs(out - want)
    torchs = np.abs(F.interpolate(torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1)[None], scale_factor=4,
                                  mode="bicubic", align_corners=False)[0].permute(1, 2, 0).clamp(0, 255).round()
                    .numpy() - want)
    assert ours.mean() < 0.5 and ours.max() <= 2  # rounding of fixed-point weights
    assert torchs.mean() > 3 * ours.mean()  # the a = -0.75 kernel is measurably another one
