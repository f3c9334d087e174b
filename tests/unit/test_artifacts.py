"""Style artifact measures (impasto.train.artifacts, `impasto eval style`) on images with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from impasto.cli import main
from impasto.train.artifacts import edge_bands, grid_means, grid_spread, local_grid
from PIL import Image

SAMPLES = Path(__file__).parents[2] / "backend" / "impasto" / "data" / "samples"


def _smooth(h: int = 128, w: int = 160) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    grey = 110 + 40 * np.sin(xx / 11.0) * np.cos(yy / 17.0) + 0.2 * yy
    return np.repeat(grey[..., None], 3, -1)


def test_a_known_4px_pattern_gives_its_amplitude() -> None:
    dot = np.zeros((4, 4))
    dot[1, 2] = 20.0  # one bright pixel in every 4x4 cell, 20 levels
    img = _smooth() + np.tile(dot, (32, 40))[..., None]
    assert grid_spread(img) == pytest.approx(20.0, rel=0.02)
    m = grid_means(img)
    assert np.unravel_index(m.argmax(), m.shape) == (1, 2)  # phases are counted from the image origin
    # a zero-mean pattern: the spread is its own max - min
    rng = np.random.default_rng(0)
    cell = rng.uniform(-6, 6, (4, 4))
    cell -= cell.mean()
    img = _smooth() + np.tile(cell, (32, 40))[..., None]
    assert grid_spread(img) == pytest.approx(cell.max() - cell.min(), rel=0.02)


def test_clean_images_have_no_grid() -> None:
    assert grid_spread(_smooth()) < 0.05
    flat = np.full((96, 96, 3), 77.0)
    assert grid_spread(flat) == pytest.approx(0.0, abs=1e-9)
    assert grid_spread(flat + np.random.default_rng(1).normal(0, 5, flat.shape)) < 0.6  # no fixed phase
    photo = np.asarray(Image.open(SAMPLES / "chelsea.png").convert("RGB"))
    assert grid_spread(photo) < 1.5  # the photos: 0.5-1.5


def test_the_local_grid_sees_a_pattern_that_cancels_over_the_image() -> None:
    rng = np.random.default_rng(3)
    cell = rng.uniform(-8, 8, (4, 4))
    cell -= cell.mean()
    rms = float(np.sqrt((cell**2).mean()))
    pattern = np.tile(cell, (32, 40))
    pattern[:, 80:] *= -1  # one sign on the left half, the other on the right: the image means cancel
    img = _smooth() + pattern[..., None]
    assert grid_spread(img) < 0.5
    assert local_grid(img) == pytest.approx(rms, rel=0.1)
    # texture at no fixed phase is taken out: noise of 10 levels leaves well under 1
    noisy = _smooth() + rng.normal(0, 10, (128, 160))[..., None]
    assert local_grid(noisy) < 1.0
    assert local_grid(noisy + pattern[..., None]) == pytest.approx(rms, rel=0.2)
    photo = np.asarray(Image.open(SAMPLES / "chelsea.png").convert("RGB"))
    assert local_grid(photo) < 1.0


def test_a_known_edge_band() -> None:
    img = np.full((64, 80, 3), 128.0)
    img[:3] -= 40.0  # dark top frame, 3 rows
    img[:, -3:] += 25.0  # light right frame, 3 columns
    bands = edge_bands(img)
    assert bands["top"] == pytest.approx(-40.0)  # the right band lies in both its outer and inner rows
    assert bands["right"] == pytest.approx(25.0)
    # the left band's rows 0-2 are dark in both its outer columns and its inner columns: they cancel
    assert bands["left"] == pytest.approx(0.0, abs=1e-9) and bands["bottom"] == pytest.approx(0.0, abs=1e-9)
    img[8:16] += 10.0  # only rows 8-15 count as the inner band
    assert edge_bands(img)["top"] == pytest.approx(-50.0)
    img[16:] += 99.0
    assert edge_bands(img)["top"] == pytest.approx(-50.0)


def test_clean_images_have_no_edge_band() -> None:
    assert edge_bands(np.full((48, 48, 3), 200.0)) == {e: 0.0 for e in ("top", "bottom", "left", "right")}
    rng = np.random.default_rng(2)
    texture = 128 + rng.normal(0, 10, (256, 256, 3))
    assert max(abs(v) for v in edge_bands(texture).values()) < 1.5
    with pytest.raises(ValueError):
        edge_bands(np.zeros((20, 20)))


def test_cli_eval_style(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Image.fromarray(_smooth(60, 80).astype(np.uint8)).save(tmp_path / "p.png")
    argv = ["eval", "style", str(tmp_path / "p.png"), "--model", "udnie", "--size", "96"]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["photos"] == ["p"] and list(out["styles"]) == ["udnie"]
    row = out["styles"]["udnie"]["photos"]["p"]
    assert set(row["output"]) == {"grid", "local", "top", "bottom", "left", "right"}
    assert row["photo"]["grid"] < 0.5 and row["output"]["grid"] > row["photo"]["grid"]  # 8-bit rounding
    assert out["styles"]["udnie"]["mean"] == row
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "udnie: stylized (photo)" in text and text.count("\np ") == 1 and "\nmean " in text
    assert main(["eval", "style", str(tmp_path / "missing.png")]) == 1


def test_the_engines_edge_margin_takes_the_bands_away() -> None:
    """wave darkens the top 3 rows by ~50 levels when it sees the picture's own border (docs/quality.md); with the
    engine's reflected margin the border it sees is outside the picture, and the bands stay near the photo's."""
    from impasto.engine.engine import Engine, EngineConfig
    from impasto.engine.pixels import PixelBuffer

    with Image.open(SAMPLES / "chelsea.png") as im:  # at eval style's size, 512 on the long side
        photo = np.asarray(im.convert("RGB").resize((512, 341), Image.Resampling.BICUBIC))
    bands = {}
    for margin in (0, 32):
        engine = Engine(EngineConfig(device="cpu", runtime="torch", bf16=False, edge_margin=margin))
        out = engine.stylize(PixelBuffer.from_array(photo), "wave").array
        assert out.shape == photo.shape
        bands[margin] = edge_bands(out)
    own = edge_bands(photo)
    added = {m: max(abs(b[e] - own[e]) for e in b) for m, b in bands.items()}
    assert added[0] > 30 and added[32] < 15, added
