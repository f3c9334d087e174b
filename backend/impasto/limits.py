"""The request options' accepted ranges and defaults, named once for the engine and the server.

Foundation layer: imports nothing. The editor plugins may not import the backend, so they keep the same
values in plugins/common/impasto_common.py; tests/unit/test_plugin_common.py checks that the two agree and
that the engine refuses what lies outside these ranges."""

from __future__ import annotations

# Blend of the stylized image with the original: 0 none, 1 full.
STRENGTH_MIN, STRENGTH_MAX, STRENGTH_DEFAULT = 0.0, 1.0, 1.0
# Processing scale of a stylization (the image is resized by it around the network): larger, finer strokes.
SCALE_MIN, SCALE_MAX, SCALE_DEFAULT = 0.25, 4.0, 1.0
# Gatys iterations after the network pass; 0: none.
REFINE_MIN, REFINE_MAX, REFINE_DEFAULT = 0, 1000, 0
# What upscaling multiplies width and height by.
SR_SCALES = (2, 4, 8)
