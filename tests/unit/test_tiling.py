"""Tiled output equals untiled output (whole-image instance-norm statistics), and OOM retries."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from impasto.cancel import CancelToken
from impasto.engine import whole
from impasto.engine.tiling import RunConfig, run_network
from impasto.errors import Cancelled, ResourceExhausted
from impasto.nets.engstrom import build_engstrom, convert_ml5, engstrom_from_state
from impasto.nets.johnson import build_johnson, johnson_from_state
from impasto.nets.spec import spec_of
from impasto.nets.srgan import srgan_from_state


@pytest.fixture(scope="module")
def nets(shared: Path) -> dict[str, torch.nn.Module]:
    reduced = shared / "weights/style_nets/pytorch_examples_reduced/saved_models_nc8/mosaic_nc8_b1_e2_1e05_1e10.model"
    return {
        "johnson": johnson_from_state(torch.load(reduced, map_location="cpu", weights_only=True)),
        "engstrom": engstrom_from_state(convert_ml5(shared / "weights/style_nets/ml5_engstrom/udnie")),
        "srgan": srgan_from_state(torch.load(shared / "weights/sr/srgan/netG_epoch_2_100.pth", map_location="cpu",
                                             weights_only=True)),
    }


# (height, width, tile): odd sizes, tiles not dividing the image, an image smaller than a tile
CASES = [(61, 67, 16), (50, 40, 32), (33, 97, 24), (20, 30, 64), (7, 9, 16)]


@pytest.mark.parametrize("name", ["johnson", "engstrom", "srgan"])
@pytest.mark.parametrize(("h", "w", "tile"), CASES)
def test_tiled_equals_untiled(nets: dict, name: str, h: int, w: int, tile: int) -> None:
    torch.manual_seed(h * w)
    x = torch.rand(1, 3, h, w) * 255
    whole = run_network(nets[name], x, RunConfig())
    tiled = run_network(nets[name], x, RunConfig(tile=tile, force_tiles=True))
    assert whole.shape == tiled.shape
    assert (whole - tiled).abs().max() <= 1.0  # 1/255 of the range in u8 steps


def test_per_tile_statistics_would_differ(nets: dict) -> None:
    """The reason for whole-image statistics: running the net per tile gives visibly different output."""
    x = torch.rand(1, 3, 64, 64) * 255
    x[..., :32, :] *= 0.3  # a dark half and a bright half
    whole = run_network(nets["johnson"], x, RunConfig())
    naive = torch.cat([nets["johnson"](x[..., :32, :]), nets["johnson"](x[..., 32:, :])], dim=2).detach()
    assert (whole - naive).abs().max() > 10


def test_tiny_budget_retries_with_smaller_tiles(nets: dict, caplog: pytest.LogCaptureFixture) -> None:
    x = torch.rand(1, 3, 72, 64) * 255
    whole = run_network(nets["engstrom"], x, RunConfig())
    caplog.set_level(logging.INFO, logger="impasto.engine.tiling")
    cfg = RunConfig(tile=256, budget=1 << 20)  # too small for the whole image or a 256px tile
    out = run_network(nets["engstrom"], x, cfg)
    retries = [r.message for r in caplog.records if "retrying with" in r.message]
    assert retries, "expected at least one out-of-memory retry"
    assert (whole - out).abs().max() <= 1.0


def test_impossible_budget_is_a_clear_error(nets: dict) -> None:
    with pytest.raises(ResourceExhausted, match="does not fit in memory"):
        run_network(nets["srgan"], torch.rand(1, 3, 32, 32) * 255, RunConfig(budget=1000))


@pytest.mark.parametrize("bicubic_skip", [False, True])
def test_tiled_equals_untiled_for_the_papers_sr_net(bicubic_skip: bool) -> None:
    """The halo windows of `run_windows` come from the net's NetSpec (scale, halo) alone."""
    from impasto.nets.sr import build_johnson_sr

    torch.manual_seed(3)
    net = build_johnson_sr(scale=4, channels=8, blocks=2, bicubic_skip=bicubic_skip).eval()
    x = torch.rand(1, 3, 21, 26) * 255
    whole = run_network(net, x, RunConfig())
    tiled = run_network(net, x, RunConfig(tile=8, force_tiles=True))
    assert whole.shape == tiled.shape == (1, 3, 84, 104)
    assert (whole - tiled).abs().max() <= 1e-2


@pytest.mark.parametrize("h,w", [(1, 1), (2, 3), (4, 4), (3, 17)])
def test_tiny_images_run_on_every_family(h: int, w: int) -> None:
    """An editor's tiny selection: padded to the smallest size a network can run on, then cropped back."""
    import numpy as np
    from impasto.engine.engine import Engine, EngineConfig
    from impasto.engine.pixels import PixelBuffer

    engine = Engine(EngineConfig(device="cpu", bf16=False))
    buf = PixelBuffer.from_array(np.random.default_rng(0).integers(0, 255, (h, w, 4), dtype=np.uint8))
    for out, scale in ((engine.stylize(buf, "scream"), 1), (engine.stylize(buf, "starry-night"), 1),
                       (engine.upscale(buf, 2, model="srgan-x2"), 2),
                       (engine.upscale(buf, 4, model="impasto-sr-x4"), 4)):
        assert (out.height, out.width) == (h * scale, w * scale)
        if scale == 1:
            assert np.array_equal(out.array[..., 3], buf.array[..., 3])  # alpha passes through untouched


# ---- whole-image calls step by step: progress and cancel inside one call (engine/whole.py) ----


def _tiny_pace() -> whole._Pace:
    return whole._Pace(rate=2e5)  # so slow that every layer is split into bands of a few rows


@pytest.mark.parametrize("build", [build_johnson, build_engstrom])
@pytest.mark.parametrize("autocast", [None, torch.bfloat16])
def test_stepped_plan_equals_forward(build, autocast: torch.dtype | None) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(1)
    net = build(widths=(8, 16, 32), res_blocks=2).eval()
    x = torch.rand(1, 3, 52, 44) * 255
    seen: list[float] = []
    ctx = torch.autocast("cpu", dtype=autocast) if autocast else torch.autocast("cpu", enabled=False)
    with torch.inference_mode(), ctx:
        want = net(x)
        got = whole.run_plan_stepped(net.spec.plan, x, lambda s, f: seen.append(f), None, "stylize",
                                     pace=_tiny_pace())[..., :52, :44]
    assert got.dtype == want.dtype
    if autocast is None:  # fp32: the same result as the forward to 1e-5 of the range (measured: bit for bit)
        assert (got - want).abs().max() <= 1e-5 * 255
    else:  # bf16 convolutions on a band of rows round differently: within one bf16 step (2^-7) of the largest value
        assert (got.float() - want.float()).abs().max() <= 2**-7 * want.float().abs().max()
    assert len(set(seen)) > 2 * len(net.spec.plan)  # banded: more events than steps
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)


def test_run_network_whole_reports_progress_and_equals_forward() -> None:
    torch.manual_seed(2)
    net = build_johnson(widths=(8, 16, 32), res_blocks=1).eval()
    x = torch.rand(1, 3, 40, 36) * 255
    seen: list[tuple[str, float]] = []
    got = run_network(net, x, RunConfig(), lambda s, f: seen.append((s, f)), stage="stylize")
    with torch.inference_mode():
        want = net(x)
    assert torch.equal(got, want)
    fractions = [f for s, f in seen if s == "stylize"]
    assert len(set(fractions)) >= 3 and fractions == sorted(fractions)


def test_cancel_stops_a_whole_image_call_between_bands() -> None:
    net = build_johnson(widths=(8, 16, 32), res_blocks=1).eval()
    token, calls = CancelToken(), []

    def progress(stage: str, fraction: float) -> None:
        calls.append(fraction)
        if len(calls) == 3:
            token.cancel()

    with pytest.raises(Cancelled), torch.inference_mode():
        whole.run_plan_stepped(net.spec.plan, torch.rand(1, 3, 48, 48) * 255, progress, token, "s", _tiny_pace())
    assert len(calls) == 3  # nothing ran after the cancel


def test_sr_whole_call_reports_progress_per_conv_and_equals_forward(nets: dict) -> None:
    net = nets["srgan"]
    x = torch.rand(1, 3, 24, 20) * 255
    seen: list[float] = []
    got = run_network(net, x, RunConfig(), lambda s, f: seen.append(f))
    with torch.inference_mode():
        want = net(x)
    assert torch.equal(got, want)
    assert len(set(seen)) >= 5 and seen == sorted(seen)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled), torch.inference_mode():
        whole.run_local_stepped(net, x, spec_of(net).halo, lambda s, f: None, token, "upscale")


@pytest.mark.parametrize("name", ["johnson", "engstrom"])
def test_layers_kept_in_a_temporary_file_give_the_same_result(nets: dict, name: str) -> None:
    """spill_over=0: every stored layer goes to a temporary file and is read back window by window."""
    torch.manual_seed(7)
    x = torch.rand(1, 3, 45, 38) * 255
    in_memory = run_network(nets[name], x, RunConfig(tile=16, force_tiles=True))
    spilled = run_network(nets[name], x, RunConfig(tile=16, force_tiles=True, spill_over=0))
    assert (in_memory - spilled).abs().max() <= 1e-3
