"""A large stylize read straight from the editor's buffer and written back band by band (engine/spill.Source,
tiling.streamed_input, Engine._stylize_streamed): the same pixels as the in-memory tiled path, without the
whole-size float32 input and output (issue 13: an 8192x8192 stylize within 3 GB)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from impasto.engine import engine as engine_module
from impasto.engine.engine import Engine, EngineConfig
from impasto.engine.pixels import PixelBuffer, PixelFormat, to_network
from impasto.engine.spill import Source
from impasto.errors import Cancelled


def _image(h: int, w: int, fmt: str, seed: int = 3) -> PixelBuffer:
    f = PixelFormat.parse(fmt)
    rng = np.random.default_rng(seed)
    if f.is_float:
        arr = rng.random((h, w, f.channels), dtype=np.float32).astype(f.dtype)
    else:
        arr = rng.integers(0, np.iinfo(f.dtype).max + 1, (h, w, f.channels)).astype(f.dtype)
    return PixelBuffer(arr, f)


@pytest.mark.parametrize(("fmt", "margin"), [("RGB_U8", 0), ("BGRA_U16", 6), ("RGBA_F32_LINEAR", 9)])
def test_source_windows_equal_the_padded_tensor(fmt: str, margin: int) -> None:
    """The engine's edge margin on every side, then the tiler's pad to a multiple on the right and bottom."""
    buf = _image(23, 17, fmt)
    src = Source(buf, margin, 5, 7)
    padded = F.pad(to_network(buf)[0], (margin,) * 4, mode="reflect") if margin else to_network(buf)[0]
    padded = F.pad(padded, (0, 7, 0, 5), mode="reflect")
    assert src.shape == padded.shape == (1, 3, 28 + 2 * margin, 24 + 2 * margin)
    h, w = padded.shape[2:]
    windows = [(0, h, 0, w), (h - 8, h, 3, w), (0, 9, w - 9, w), (h - 6, h - 1, w - 8, w - 5), (4, 11, 2, 9),
               (0, 3, 0, 4), (margin, margin + 23, margin, margin + 17)]
    for r0, r1, c0, c1 in windows:
        assert torch.equal(src.read(r0, r1, c0, c1), padded[..., r0:r1, c0:c1]), (r0, r1, c0, c1)


def test_source_refuses_a_pad_wider_than_the_image() -> None:
    with pytest.raises(ValueError, match="larger image"):
        Source(_image(4, 4, "RGB_U8"), 0, 4, 0)
    with pytest.raises(ValueError, match="larger image"):
        Source(_image(4, 9, "RGB_U8"), 4, 0, 0)


@pytest.fixture(scope="module")
def engines() -> tuple[Engine, Engine]:
    """Two torch engines on forced tiles: one as configured (its layers and image in memory at these sizes),
    one whose run config keeps every stored layer in a file, which also makes it stream every image."""
    cfg = EngineConfig(device="cpu", bf16=False, runtime="torch", force_tiles=True, tile_size=32)
    plain, streaming = Engine(cfg), Engine(cfg)
    base = streaming.run_config
    streaming.run_config = lambda: replace(base(), spill_over=0)  # type: ignore[method-assign]
    return plain, streaming


@pytest.mark.parametrize(("fmt", "options"), [
    ("RGB_U8", {}),
    ("BGRA_U8", {"strength": 0.6, "preserve_colors": True}),
    ("RGBA_U16", {"strength": 0.35}),
    ("RGBA_F32_LINEAR", {"preserve_colors": True}),
])
def test_streamed_stylize_equals_the_in_memory_tiled_path(
    engines: tuple[Engine, Engine], monkeypatch: pytest.MonkeyPatch, fmt: str, options: dict
) -> None:
    plain, streaming = engines
    image = _image(45, 38, fmt)  # not a multiple of 4: the source pads by reflection
    calls: list[int] = []
    real = engine_module.run_streamed
    monkeypatch.setattr(engine_module, "run_streamed", lambda *a, **k: calls.append(1) or real(*a, **k))
    expected = plain.stylize(image, "starry-night", **options)
    assert not calls  # the plain engine took the usual path
    got = streaming.stylize(image, "starry-night", **options)
    assert calls == [1]
    assert got.format == image.format and got.array.shape == image.array.shape
    if image.format.has_alpha:
        alpha = image.format.order.index("A")
        assert np.array_equal(got.array[..., alpha], image.array[..., alpha])
    diff = np.abs(got.array.astype(np.float64) - expected.array.astype(np.float64))
    one_level = 1.0 / 255 if image.format.is_float else np.iinfo(image.format.dtype).max / 255
    assert diff.max() <= one_level * 1.01, diff.max()
    # stored layers come back from the file channels-last, where convolutions sum in another order: float32
    # rounding, which moves an integer result by a level only where it sits on a rounding boundary
    assert np.mean(diff <= (1e-5 if image.format.is_float else 0)) > 0.99


def test_streamed_stylize_is_not_used_where_it_cannot_be(engines: tuple[Engine, Engine],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A processing scale or refinement needs the whole tensors: the usual path."""
    _, streaming = engines
    monkeypatch.setattr(engine_module, "run_streamed", lambda *a, **k: pytest.fail("streamed"))
    out = streaming.stylize(_image(40, 36, "RGB_U8"), "starry-night", scale=0.5)
    assert out.array.shape == (40, 36, 3)


def test_streamed_stylize_can_be_cancelled(engines: tuple[Engine, Engine]) -> None:
    from impasto.cancel import CancelToken

    _, streaming = engines
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        streaming.stylize(_image(40, 36, "RGB_U8"), "starry-night", cancel=token)
