"""Training on tiny images: losses fall, a resumed run equals an uninterrupted one, results reach the store."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from impasto.cancel import CancelToken
from impasto.errors import Cancelled
from impasto.train.common import lr_at
from impasto.train.sr import SRConfig, degrade, save_sr_model, train_sr
from impasto.train.style import StyleConfig, save_style_model, style_weight_at, train_style
from PIL import Image

ROOT = Path(__file__).parents[2]
DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> object:
    # These nets are tiny: one thread beats several fighting over a shared CI machine's cores.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A handful of small photos: the sample photos that ship with the package."""
    folder = tmp_path_factory.mktemp("photos")
    srcs = sorted((ROOT / "backend" / "impasto" / "data" / "samples").glob("*.png"))
    rng = np.random.default_rng(0)
    for i in range(4):
        if srcs:
            im = Image.open(srcs[i % len(srcs)]).convert("RGB").resize((56, 48), Image.Resampling.BICUBIC)
        else:
            yy, xx = np.mgrid[0:48, 0:56]
            arr = np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1) + rng.integers(0, 40, (48, 56, 3))
            im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        im.save(folder / f"p{i}.png")
    return folder


@pytest.fixture(scope="module")
def style_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("style") / "style.png"
    src = DATA / "style_images" / "public_domain" / "starry_night.jpg"
    if src.is_file():
        Image.open(src).convert("RGB").resize((64, 48), Image.Resampling.BICUBIC).save(path)
    else:
        arr = (np.indices((48, 64)).sum(0) % 16 < 8)[..., None] * np.array([30, 60, 200])
        Image.fromarray(arr.astype(np.uint8)).save(path)
    return path


def _style_cfg(photos: Path, style: Path, out: Path, **kw: object) -> StyleConfig:
    base = StyleConfig(style_image=str(style), content=str(photos), name="tiny", image_size=32, batch=2,
                       iterations=12, lr=1e-2, widths=(8, 16, 16), res_blocks=1, style_size=64,
                       style_weight=10.0, style_ramp=0, checkpoint_every=0, sample_every=0, out_dir=str(out))
    return replace(base, **kw)  # type: ignore[arg-type]


def _mean(h: list[dict[str, float]], key: str, sl: slice) -> float:
    return float(np.mean([r[key] for r in h[sl]]))


def test_lr_function_is_pure() -> None:
    assert lr_at(5, lr=1e-3, iterations=100) == 1e-3
    assert lr_at(0, lr=1e-3, iterations=100, warmup=10) == pytest.approx(1e-4)
    assert lr_at(99, lr=1e-3, iterations=100, schedule="cosine") == pytest.approx(1e-4, rel=0.01)
    assert lr_at(50, lr=1e-3, iterations=100, schedule="cosine") == lr_at(50, lr=1e-3, iterations=100,
                                                                          schedule="cosine")


def test_style_training_lowers_the_loss(photos: Path, style_image: Path, tmp_path: Path) -> None:
    cfg = _style_cfg(photos, style_image, tmp_path / "run", iterations=16, sample_every=16, checkpoint_every=16)
    run = train_style(cfg, show_bar=False)
    h = run.history
    assert len(h) == 16
    assert _mean(h, "total", slice(-4, None)) < 0.7 * _mean(h, "total", slice(0, 4))
    for name in ("latest.pt", "loss.png", "samples_latest.png", "history.json"):
        assert (tmp_path / "run" / name).is_file(), name
    assert run.config.content_layer == "relu2_2" and run.config.style_layers == ("relu1_2", "relu2_2", "relu3_3")


def test_style_ramp_starts_on_content_and_reaches_the_weight() -> None:
    assert style_weight_at(0, 10.0, 0) == 10.0
    assert [style_weight_at(i, 10.0, 4) for i in range(6)] == [0.0, 2.5, 5.0, 7.5, 10.0, 10.0]


def test_style_ramp_trains_content_first(photos: Path, style_image: Path, tmp_path: Path) -> None:
    # during the ramp's first step the style term weighs nothing: the loss is the content (+TV) alone
    run = train_style(_style_cfg(photos, style_image, tmp_path / "run", iterations=3, style_ramp=2), show_bar=False)
    first, last = run.history[0], run.history[-1]
    assert first["total"] == pytest.approx(first["content"] + 1e-4 * first["tv"] + 1e4 * first["grid"], rel=1e-5)
    assert last["total"] == pytest.approx(last["content"] + 10 * last["style"] + 1e-4 * last["tv"]
                                          + 1e4 * last["grid"], rel=1e-5)


def test_resumed_run_equals_uninterrupted(photos: Path, style_image: Path, tmp_path: Path) -> None:
    # with a style ramp, so the resumed run must also pick the ramp up where it stopped
    cfg = _style_cfg(photos, style_image, tmp_path / "a", iterations=6, checkpoint_every=3, lr_schedule="cosine",
                     style_ramp=5)
    straight = train_style(cfg, show_bar=False)

    token = CancelToken()
    interrupted = replace(cfg, out_dir=str(tmp_path / "b"))
    with pytest.raises(Cancelled):  # stop it after the checkpoint at iteration 3, as a crash or Ctrl-C would
        train_style(interrupted, show_bar=False, cancel=token,
                    progress=lambda s, f: token.cancel() if f >= 0.5 else None)
    resumed = train_style(interrupted, resume=tmp_path / "b", show_bar=False)

    assert [r["total"] for r in resumed.history] == [r["total"] for r in straight.history]
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_style_model_lands_in_the_store(photos: Path, style_image: Path, tmp_path: Path) -> None:
    from impasto.models.store import ModelStore

    run = train_style(_style_cfg(photos, style_image, tmp_path / "run", iterations=2), show_bar=False)
    store = ModelStore(user_dir=tmp_path / "store", bundled_dir=None)
    info = save_style_model(run, store)
    assert info.kind == "style" and info.thumbnail_png and info.style_image_jpeg
    assert info.training["iterations"] == 2 and info.training["loss_net"] == "vgg19-partial"
    # the trainer's folders stay on the trainer's machine (tmp_path is absolute)
    assert info.training["style_image"] == style_image.name and info.training["out_dir"] == "run"
    assert str(tmp_path) not in json.dumps(info.training) + info.source
    net = store.load("tiny")
    x = torch.rand(1, 3, 32, 32) * 255
    with torch.no_grad():
        torch.testing.assert_close(net(x), run.model(x), atol=1.0, rtol=0.02)  # the store keeps fp16


def test_init_from_starts_where_the_trained_network_ended(photos: Path, style_image: Path, tmp_path: Path) -> None:
    from impasto.errors import InvalidArgument
    from impasto.models.store import ModelStore

    first = train_style(_style_cfg(photos, style_image, tmp_path / "a", iterations=16), show_bar=False)
    store = ModelStore(user_dir=tmp_path / "store", bundled_dir=None)
    path = save_style_model(first, store).path
    assert path is not None
    # one more iteration from the saved file: it starts near where the first run ended, not where it began
    again = train_style(_style_cfg(photos, style_image, tmp_path / "b", iterations=1, init_from=str(path)),
                        show_bar=False)
    assert again.config.init_from == str(path)
    assert again.history[0]["total"] < 0.7 * first.history[0]["total"]
    # a network of another shape is refused with what to check, before any training
    with pytest.raises(InvalidArgument, match="not a network of this shape"):
        train_style(_style_cfg(photos, style_image, tmp_path / "c", iterations=1, init_from=str(path),
                               widths=(8, 16, 32)), show_bar=False)


def test_degrade_blurs_then_downsamples() -> None:
    hr = torch.rand(2, 3, 32, 32) * 255
    lr = degrade(hr, 4)
    assert lr.shape == (2, 3, 8, 8)
    flat = torch.full((1, 3, 16, 16), 77.0)
    assert torch.equal(degrade(flat, 4), torch.full((1, 3, 4, 4), 77.0))


@pytest.mark.parametrize("loss", ["pixel", "feat"])
def test_sr_training_lowers_the_loss(photos: Path, tmp_path: Path, loss: str) -> None:
    cfg = SRConfig(data=str(photos), name=f"sr-{loss}", patch_size=32, batch=2, iterations=30, lr=3e-3, loss=loss,
                   channels=8, blocks=1, checkpoint_every=30, sample_every=30, out_dir=str(tmp_path / "run"))
    run = train_sr(cfg, show_bar=False)
    h = run.history
    assert _mean(h, "total", slice(-8, None)) < 0.8 * _mean(h, "total", slice(0, 8))
    from impasto.models.store import ModelStore

    info = save_sr_model(run, ModelStore(user_dir=tmp_path / "store", bundled_dir=None))
    assert info.kind == "sr" and info.scale == 4 and info.training["loss"] == loss
    assert info.training["data"] == photos.name and str(tmp_path) not in json.dumps(info.training) + info.source


def test_bicubic_skip_net_starts_at_bicubic(photos: Path, tmp_path: Path) -> None:
    import torch.nn.functional as F

    cfg = SRConfig(data=str(photos), name="sr-skip", patch_size=32, batch=2, iterations=0, channels=8, blocks=1,
                   bicubic_skip=True, checkpoint_every=0, sample_every=0, out_dir=str(tmp_path / "run"))
    net = train_sr(cfg, show_bar=False).model
    lr = torch.rand(1, 3, 12, 12) * 255
    with torch.no_grad():
        gap = (net(lr) - F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False)).abs()
    # an untouched random residual branch would add tens of grey levels
    assert float(gap.mean()) < 1.0, float(gap.mean())
