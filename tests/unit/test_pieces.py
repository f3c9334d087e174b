"""The exact tiled path on OpenVINO (engine/pieces.py): tiled on OpenVINO equals untiled torch, bf16 stays within
2% of range, a damaged cache entry is rebuilt, a layer or a platform without OpenVINO runs on torch, and the
tiles still report progress and see a cancel."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from impasto.cancel import CancelToken
from impasto.engine import pieces, runtime
from impasto.engine.engine import Engine, EngineConfig
from impasto.engine.pixels import PixelBuffer, PixelFormat
from impasto.engine.tiling import RunConfig, run_network
from impasto.errors import Cancelled
from impasto.models.store import ModelStore
from impasto.nets.blocks import UpsampleConvLayer
from impasto.nets.engstrom import build_engstrom
from impasto.nets.johnson import build_johnson
from impasto.nets.spec import spec_of
from PIL import Image

pytestmark = [pytest.mark.skipif(runtime.openvino_version() is None, reason="OpenVINO does not load here"),
              pytest.mark.usefixtures("openvino_cache")]

SAMPLE = Path(__file__).resolve().parents[2] / "backend/impasto/data/samples/astronaut.png"
BUNDLED_STYLES = sorted(m.name for m in ModelStore().list("style") if m.bundled)  # every one, as it ships
MAX_LEVELS = 0.02 * 255  # issue 13: reduced precision stays within 2% of range of fp32 torch


def _net(build, seed: int) -> torch.nn.Module:  # type: ignore[no-untyped-def]
    """A small style net with random weights and instance norms that are not the identity."""
    net = build(widths=(8, 16, 16), res_blocks=1)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.dim() == 1:
                p.copy_(torch.rand(p.shape, generator=g) + (0.5 if name.endswith("weight") else -0.5))
    return net.eval()


def _photo(h: int, w: int) -> torch.Tensor:
    with Image.open(SAMPLE) as im:
        arr = np.asarray(im.convert("RGB").resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())[None]


def _untiled(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return run_network(net, x, RunConfig(budget=1 << 40))  # whole image, fp32 torch: the reference


def _tiled(net: torch.nn.Module, x: torch.Tensor, layers: pieces.Pieces | None, tile: int,
           autocast: torch.dtype | None = None, **kw: object) -> torch.Tensor:
    return run_network(net, x, RunConfig(tile=tile, force_tiles=True, autocast=autocast), pieces=layers,
                       **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("build", [build_johnson, build_engstrom], ids=["johnson", "engstrom"])
def test_tiled_on_openvino_f32_equals_untiled_torch(build) -> None:  # type: ignore[no-untyped-def]
    net = _net(build, seed=1)
    layers = pieces.Pieces(spec_of(net).plan, runtime.module_sha(net), "f32")  # type: ignore[arg-type]
    assert len(layers.compiled()) == len(pieces.spatial_layers(spec_of(net).plan))  # type: ignore[arg-type]
    x = _photo(40, 56)
    want = _untiled(net, x)
    tol = float(want.max() - want.min()) / 255  # 1/255 of the output's range
    for tile in (8, 13, 64):  # tiles smaller than the image at every layer, uneven ones, one tile
        got = _tiled(net, x, layers, tile)
        assert got.shape == want.shape
        assert float((got - want).abs().max()) <= tol, tile


def test_engine_tiles_on_openvino_and_matches_torch() -> None:
    img = PixelBuffer(np.random.default_rng(0).integers(0, 255, (40, 56, 3)).astype(np.uint8),
                      PixelFormat.parse("RGB_U8"))
    tiled = Engine(EngineConfig(device="cpu", bf16=False, runtime="openvino", force_tiles=True, tile_size=16))
    ref = Engine(EngineConfig(device="cpu", bf16=False, runtime="torch"))
    a = tiled.stylize(img, "udnie").array.astype(int)
    _, _, layers = tiled._network(tiled.store.get("udnie"))
    assert layers is not None and len(layers.compiled()) > 0  # the tiles did run on OpenVINO
    assert np.abs(a - ref.stylize(img, "udnie").array.astype(int)).max() <= 1


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLED_STYLES)
def test_bundled_style_tiled_in_reduced_precision_stays_within_2_percent(name: str) -> None:
    """The engine's precision on this CPU (bf16 where it has AVX512-BF16/AMX and the whole network measured
    close enough, else f32), tiled on OpenVINO, against untiled fp32 torch."""
    store = ModelStore()
    net, info = store.load(name), store.get(name)
    precision = runtime.prepare(net, runtime.precision_for(torch.bfloat16), info.sha256).precision
    layers = pieces.Pieces(spec_of(net).plan, info.sha256, precision)  # type: ignore[arg-type]
    x = _photo(96, 80)
    got = _tiled(net, x, layers, 32, torch.bfloat16 if precision == "bf16" else None).clamp(0, 255)
    diff = (got - _untiled(net, x).clamp(0, 255)).abs()
    assert float(diff.max()) <= MAX_LEVELS, f"{name} in {precision}: {float(diff.max()):.2f} levels"


def test_a_damaged_cache_entry_is_rebuilt() -> None:
    net = _net(build_johnson, seed=2)
    plan, sha = spec_of(net).plan, "beef" * 16
    assert plan is not None
    x = _photo(24, 20)
    want = _tiled(net, x, pieces.Pieces(plan, sha, "f32"), 8)
    folder = pieces.entry_dir(sha, "f32", runtime.openvino_version() or "")
    good = (folder / "piece3.bin").read_bytes()
    for name, data in [("piece3.bin", bytes(len(good))), ("entry.json", b"{not json"), ("piece0.xml", b"")]:
        (folder / name).write_bytes(data)
        got = _tiled(net, x, pieces.Pieces(plan, sha, "f32"), 8)
        assert torch.equal(got, want), name
        assert (folder / "piece3.bin").read_bytes() == good
    assert not [p for p in folder.parent.iterdir() if ".tmp-" in p.name]  # no temporary folders left


def test_a_layer_that_does_not_build_runs_on_torch(monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    real = pieces.piece_model

    def refuse_upsampling(op, prologue: bool, stats: bool):  # type: ignore[no-untyped-def]
        if isinstance(op, UpsampleConvLayer):
            raise runtime.Unsupported("no such layer")
        return real(op, prologue, stats)

    monkeypatch.setattr(pieces, "piece_model", refuse_upsampling)
    net = _net(build_johnson, seed=3)
    layers = pieces.Pieces(spec_of(net).plan, "d00d" * 16, "f32")  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="impasto.engine.pieces"):
        got = _tiled(net, _photo(24, 20), layers, 8)
    assert len(caplog.records) == 2 and all("runs on torch" in r.message for r in caplog.records)  # one a layer
    assert len(layers.compiled()) == len(pieces.spatial_layers(layers.plan)) - 2
    want = _untiled(net, _photo(24, 20))
    assert float((got - want).abs().max()) <= float(want.max() - want.min()) / 255


def test_without_openvino_the_tiles_run_on_torch(monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    net = _net(build_engstrom, seed=4)
    x = _photo(24, 20)
    want = _tiled(net, x, None, 8)
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    layers = pieces.Pieces(spec_of(net).plan, "cafe" * 16, "f32")  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="impasto.engine.pieces"):
        got = _tiled(net, x, layers, 8)
        _tiled(net, x, layers, 8)  # decided once: no second line
    assert [r.message for r in caplog.records] == ["the tiled path runs on torch (Unsupported: OpenVINO does not "
                                                   "load here)"]
    assert torch.equal(got, want)
    img = PixelBuffer(np.full((20, 24, 3), 90, np.uint8), PixelFormat.parse("RGB_U8"))
    engine = Engine(EngineConfig(device="cpu", bf16=False, runtime="auto", force_tiles=True, tile_size=8))
    assert engine.runtime == "torch"
    ref = Engine(EngineConfig(device="cpu", bf16=False, runtime="torch"))
    assert np.abs(engine.stylize(img, "wave").array.astype(int) - ref.stylize(img, "wave").array.astype(int)).max() <= 1


def test_tiles_on_openvino_report_progress_and_see_a_cancel() -> None:
    net = _net(build_johnson, seed=5)
    layers = pieces.Pieces(spec_of(net).plan, runtime.module_sha(net), "f32")  # type: ignore[arg-type]
    x = _photo(32, 32)
    seen: list[float] = []
    _tiled(net, x, layers, 8, progress=lambda stage, f: seen.append(f))
    assert len(seen) > 20 and seen == sorted(seen) and seen[-1] == 1.0  # one step a tile, in order, to the end

    class CancelAfter(CancelToken):
        checks = 0

        def check(self) -> None:
            self.checks += 1
            if self.checks == 10:
                self.cancel()
            super().check()

    token = CancelAfter()
    with pytest.raises(Cancelled):
        _tiled(net, x, layers, 8, cancel=token)
    assert token.checks == 10  # seen at the next tile


def test_tiles_on_openvino_from_layers_in_a_temporary_file() -> None:
    net = _net(build_engstrom, seed=6)
    layers = pieces.Pieces(spec_of(net).plan, runtime.module_sha(net), "f32")  # type: ignore[arg-type]
    x = _photo(40, 56)
    want = _untiled(net, x)
    got = run_network(net, x, RunConfig(tile=13, force_tiles=True, spill_over=0), pieces=layers)
    assert float((got - want).abs().max()) <= float(want.max() - want.min()) / 255
