"""The Engine's public operations refuse non-finite numbers themselves (not only the server's decoding)."""

from __future__ import annotations

import numpy as np
import pytest
from impasto.engine.engine import Engine, EngineConfig
from impasto.engine.pixels import PixelBuffer
from impasto.errors import InvalidArgument


@pytest.mark.parametrize("weights", [{"content_weight": float("nan")}, {"style_weight": float("inf")},
                                     {"content_weight": float("-inf")}, {"style_weight": -2.0}])
def test_gatys_refuses_non_finite_or_negative_weights(weights: dict[str, float]) -> None:
    image = PixelBuffer.from_array(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InvalidArgument, match="finite number"):
        Engine(EngineConfig(device="cpu")).gatys(image, image, iterations=1, **weights)


@pytest.mark.parametrize("options", [{"strength": float("nan")}, {"scale": float("nan")}, {"scale": float("inf")}])
def test_stylize_refuses_non_finite_options(options: dict[str, float]) -> None:
    image = PixelBuffer.from_array(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InvalidArgument):
        Engine(EngineConfig(device="cpu")).stylize(image, "wave", **options)  # type: ignore[arg-type]
