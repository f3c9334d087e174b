"""The bundled x4 model, through the engine as users run it, beats bicubic on Set5."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from impasto.cli.demo_run import psnr_y
from impasto.engine.engine import Engine, EngineConfig
from impasto.engine.pixels import PixelBuffer
from impasto.train.evaluate import bicubic, find_pairs


@pytest.mark.slow
def test_upscale_x4_beats_bicubic_on_set5(shared: Path) -> None:
    engine = Engine(EngineConfig(device="cpu"))
    ours, base = [], []
    for _name, hr, lr, _gray in find_pairs(shared / "sr/eval_x4/Set5", 4):
        out = engine.upscale(PixelBuffer.from_array(lr), 4).array
        assert out.shape == hr.shape
        ours.append(psnr_y(out, hr, 4))
        base.append(psnr_y(bicubic(lr, 4), hr, 4))
    assert abs(np.mean(base) - 28.43) < 0.02  # the paper's bicubic baseline
    assert np.mean(ours) > np.mean(base) + 1.0
