"""plugins/common/impasto_common.py against the backend: the plugins may not import the backend, so they keep
its pixel formats, option ranges, default address and job-event words in a copy of their own, checked here."""

from __future__ import annotations

import ast
import inspect
import itertools
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from impasto import limits
from impasto.cancel import CancelToken
from impasto.cli import build_parser
from impasto.engine.engine import Engine, EngineConfig
from impasto.engine.pixels import PixelBuffer, PixelFormat
from impasto.errors import ImpastoError, InvalidArgument, NotFound, ResourceExhausted
from impasto.models.store import ModelStore
from impasto.serve.client import Client
from impasto.serve.jobs import JobQueue
from impasto.serve.server import ServerConfig
from plugin_loader import COMMON_DIR, load_common

common = load_common()

# The backend's orders and depths, plus names it must refuse: both sides have to agree on each.
ORDERS = [*common.ORDERS, "ARGB", "RGBX", "GRAY", "CMYK", "RG"]
DEPTHS = [*common.DEPTH_BYTES, "U4", "U32", "F64", "I8", "FLOAT"]


@pytest.mark.parametrize("order", ORDERS)
def test_pixel_formats_and_sizes_are_the_backends(order: str) -> None:
    names = [(f"{order}_{d}", f"{order}_{d}_LINEAR", f" {order.lower()}_{d.lower()} ") for d in DEPTHS]
    for name in itertools.chain.from_iterable(names):
        try:
            backend = PixelFormat.parse(name)
        except InvalidArgument:
            with pytest.raises(ValueError, match="unknown pixel format"):
                common.parse_format(name)
            continue
        assert common.parse_format(name) == (backend.order, backend.depth, backend.linear)
        assert common.format_name(backend.order, backend.depth, backend.linear) == backend.name
        assert common.DEPTH_BYTES[backend.depth] == backend.bytes_per_channel
        assert common.bytes_per_pixel(name) == backend.buffer_size(1, 1)
        assert common.buffer_size(5, 3, name) == backend.buffer_size(5, 3)


@pytest.mark.parametrize("name", ["", "RGBA", "RGBA_U8_U8", "LINEAR", "RGBA__U8", "RGBA_LINEAR_U8"])
def test_malformed_names_are_refused_by_both(name: str) -> None:
    with pytest.raises(InvalidArgument):
        PixelFormat.parse(name)
    with pytest.raises(ValueError, match="unknown pixel format"):
        common.parse_format(name)


def test_option_ranges_and_defaults_are_the_backends() -> None:
    assert tuple(common.STRENGTH[1:]) == (limits.STRENGTH_MIN, limits.STRENGTH_MAX, limits.STRENGTH_DEFAULT)
    assert tuple(common.SCALE[1:]) == (limits.SCALE_MIN, limits.SCALE_MAX, limits.SCALE_DEFAULT)
    assert tuple(common.REFINE[1:]) == (limits.REFINE_MIN, limits.REFINE_MAX, limits.REFINE_DEFAULT)
    assert common.FACTORS == limits.SR_SCALES and common.DEFAULT_FACTOR in common.FACTORS
    # The engine's stylize() defaults are the same values.
    defaults = inspect.signature(Engine.stylize).parameters
    for option in (common.STRENGTH, common.SCALE, common.REFINE):
        assert defaults[option.name].default == option.default


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """An engine without models: a request that passes the option checks ends in NotFound."""
    store = ModelStore(user_dir=tmp_path_factory.mktemp("models"), bundled_dir=None)
    return Engine(EngineConfig(device="cpu", bf16=False, max_pixels=10_000), store)


def _image() -> PixelBuffer:
    return PixelBuffer(np.zeros((4, 5, 4), np.uint8), PixelFormat.parse("RGBA_U8"))


def _stylize_refusal(engine: Engine, **option: float) -> ImpastoError:
    """What the engine says to an unknown style with `option`: NotFound once the option passed its checks."""
    with pytest.raises(ImpastoError) as info:
        engine.stylize(_image(), "no-such-style", **option)  # type: ignore[arg-type]
    return info.value


@pytest.mark.parametrize("option", ["STRENGTH", "SCALE", "REFINE"])
def test_the_engine_accepts_exactly_the_common_range(engine: Engine, option: str) -> None:
    limit = getattr(common, option)
    step = 1 if isinstance(limit.high, int) else 1e-6
    for inside in (limit.low, limit.default, limit.high):
        assert isinstance(_stylize_refusal(engine, **{limit.name: inside}), NotFound), (limit.name, inside)
        limit.check(inside)
    for outside in (limit.low - step, limit.high + step):
        refusal = _stylize_refusal(engine, **{limit.name: outside})
        assert isinstance(refusal, InvalidArgument) and limit.name in str(refusal), (limit.name, outside)
        with pytest.raises(ValueError, match=limit.name):
            limit.check(outside)
        assert limit.clamp(outside) in (limit.low, limit.high)


def test_the_engine_upscales_by_exactly_the_common_factors(engine: Engine) -> None:
    for factor in range(1, max(common.FACTORS) + 2):
        if factor in common.FACTORS:
            assert engine.upscale(_image(), factor, model="bicubic").width == 5 * factor
        else:
            with pytest.raises(InvalidArgument, match="scale"):
                engine.upscale(_image(), factor, model="bicubic")


def test_default_address_is_the_backends() -> None:
    assert ServerConfig().address == common.DEFAULT_ADDRESS
    assert build_parser().parse_args(["serve"]).address == common.DEFAULT_ADDRESS
    assert inspect.signature(Client).parameters["address"].default == common.DEFAULT_ADDRESS


def test_job_events_use_the_backends_words() -> None:
    """The backend's job queue says "queued" (with a position), "progress", then "done" or "error"; the
    plugins report the same words (a queued job is a PROGRESS in the QUEUED stage on the wire)."""
    jobs = JobQueue(max_queue=2)
    try:
        def work(progress, cancel):  # type: ignore[no-untyped-def]
            progress("stylize", 0.5)
            return "result"

        def fail(progress, cancel):  # type: ignore[no-untyped-def]
            raise InvalidArgument("no")

        done = list(jobs.submit(work, CancelToken()).stream(poll=0.01))
        failed = list(jobs.submit(fail, CancelToken()).stream(poll=0.01))
    finally:
        jobs.shutdown(grace=1)
    assert [e.kind for e in done] == [common.QUEUED, common.PROGRESS, common.DONE]
    assert done[0].stage == common.QUEUED and done[0].position == 0
    assert [e.kind for e in failed][-1] == common.ERROR
    assert {"stage", "fraction", "position", "result", "error"} <= set(vars(done[0]))


def test_the_plugins_share_one_rect() -> None:
    r = common.Rect(-10, -5, 30, 20)
    assert r.intersect(common.Rect(15, 10, 100, 100)) == common.Rect(15, 10, 5, 5)
    assert r.intersect(common.Rect(100, 100, 5, 5)).empty
    assert r.expand(2).translate(1, 1).scale(2) == common.Rect(-22, -12, 68, 48)


def _old_pythons() -> list[Path]:
    """pyenv's Pythons 3.8-3.10 on this machine, if any: the oldest ones editors bundle."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = [root / v / "bin" / "python" for v in sorted(os.listdir(root))] if root.is_dir() else []
    return [p for p in found if p.is_file() and p.parent.parent.name.startswith(("3.8.", "3.9.", "3.10."))]


def test_common_module_runs_on_python_3_8() -> None:
    source = (COMMON_DIR / "impasto_common.py").read_text()
    ast.parse(source, feature_version=(3, 8))  # no newer syntax
    code = ("import impasto_common as c; c.Rect(0, 0, 1, 1).intersect(c.Rect(0, 0, 2, 2)); "
            "print(c.buffer_size(2, 2, 'RGBA_F16'), c.Progress is not None)")
    for python in _old_pythons():  # and no newer library use, where an old Python is at hand
        out = subprocess.run([str(python), "-S", "-c", code], env={"PYTHONPATH": str(COMMON_DIR)},
                             capture_output=True, text=True, timeout=60)
        assert out.stdout.split() == ["32", "True"], (python, out.stderr)


# -- limits: the arithmetic both plugins use to refuse before sending, against the engine's own checks ------

def _buffer(width: int, height: int) -> PixelBuffer:
    return PixelBuffer(np.zeros((height, width, 4), np.uint8), PixelFormat.parse("RGBA_U8"))


class _Passed(Exception):
    """Raised by the first progress event: the engine's size checks passed (nothing is run)."""


def _passed(stage: str, fraction: float, position: int = 0) -> None:
    raise _Passed


def _engine_takes(call: Callable[[], object]) -> bool:
    """Whether the engine's size checks pass `call`: it then starts ("loading"), or looks for the model
    (there is none to upscale with) and says NotFound."""
    try:
        call()
    except (_Passed, NotFound):
        return True
    except ResourceExhausted:
        return False
    raise AssertionError("the engine ran a job it should have stopped at its first step")


@pytest.fixture(scope="module")
def styled_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """An engine with a 10,000-pixel limit and one tiny style ("tiny"), which is never loaded: the engine
    checks the sizes once it knows the style, then reports "loading", where _passed stops it."""
    from impasto.models.info import ModelInfo
    from impasto.nets.johnson import build_johnson

    store = ModelStore(user_dir=tmp_path_factory.mktemp("styled"), bundled_dir=None)
    store.save("tiny", build_johnson(widths=(4, 6, 8), res_blocks=1),
               ModelInfo(name="tiny", kind="style", arch="johnson", params={"widths": [4, 6, 8], "res_blocks": 1}))
    return Engine(EngineConfig(device="cpu", bf16=False, max_pixels=10_000), store)


def _stylize_takes(engine: Engine, width: int, height: int, scale: float) -> bool:
    return _engine_takes(lambda: engine.stylize(_buffer(width, height), "tiny", scale=scale, progress=_passed))


def _upscale_takes(engine: Engine, width: int, height: int, factor: int) -> bool:
    return _engine_takes(lambda: engine.upscale(_buffer(width, height), factor, model="no-such-model"))


def test_brush_size_is_the_inverse_of_the_backends_scale() -> None:
    assert (common.BRUSH.low, common.BRUSH.high, common.BRUSH.default) == (
        1 / limits.SCALE_MAX, 1 / limits.SCALE_MIN, 1 / limits.SCALE_DEFAULT)
    for brush in (0.25, 0.5, 0.87, 1.0, 3.0, 4.0):
        assert common.scale_to_brush(common.brush_to_scale(brush)) == pytest.approx(brush)
    assert common.brush_to_scale(2.0) == 0.5
    # Outside the range: the nearest scale the backend takes (the plugins' sliders never go there).
    assert (common.brush_to_scale(100.0), common.brush_to_scale(0.0)) == (limits.SCALE_MIN, limits.SCALE_MAX)
    assert common.scale_to_brush(100.0) == common.BRUSH.low


def test_megapixels_and_sizes_read_well() -> None:
    assert [common.megapixels(n) for n in (5000, 99_999, 100_000, 1_500_000, 12_000_000, 64_000_000)] == [
        "5,000 pixels", "99,999 pixels", "0.1 MP", "1.5 MP", "12 MP", "64 MP"]
    assert common.size_text(4000, 3000) == "4000×3000 (12 MP)"


SIZES = [(100, 100), (101, 100), (100, 99), (60, 50), (33, 77), (150, 40), (1, 1), (250, 40)]
SCALES = [0.25, 0.5, 0.87, 1.0, 1.006, 1.3, 1.67, 2.0, 4.0]


def test_stylize_oversize_is_what_the_engine_refuses(styled_engine: Engine) -> None:
    limit = styled_engine.config.max_pixels
    for (w, h), scale in itertools.product(SIZES, SCALES):
        over = common.stylize_oversize(w, h, scale, limit)
        assert _stylize_takes(styled_engine, w, h, scale) == (over is None), (w, h, scale, over)
        if over is not None and over.processing:
            assert (over.width, over.height) == common.processing_size(w, h, scale)
            assert over.width * over.height > limit and w * h <= limit
        elif over is not None:
            assert (over.width, over.height) == (w, h)
        assert common.stylize_oversize(w, h, scale, 0) is None  # limit unknown: the backend decides


def test_smallest_brush_is_the_smallest_the_engine_takes(styled_engine: Engine) -> None:
    limit = styled_engine.config.max_pixels
    for w, h in [(w, h) for w, h in SIZES if w * h <= limit]:
        brush = common.smallest_brush(w, h, limit)
        assert round(brush, 2) == brush and common.BRUSH.low <= brush <= common.BRUSH.high
        scale = common.brush_to_scale(brush)
        assert common.stylize_oversize(w, h, scale, limit) is None and _stylize_takes(styled_engine, w, h, scale)
        if brush > common.BRUSH.low:
            finer = common.brush_to_scale(round(brush - 0.01, 2))
            assert common.stylize_oversize(w, h, finer, limit) is not None, (w, h, brush)
            assert not _stylize_takes(styled_engine, w, h, finer)
    assert common.smallest_brush(4000, 3000, 16_000_000) == 0.87  # a 12 MP photo at a 16 MP limit


def test_upscale_choices_are_what_the_engine_takes(engine: Engine) -> None:
    limit = engine.config.max_pixels
    said: list[tuple[int, int, int]] = []

    def too_large(factor: int, w: int, h: int) -> str:
        said.append((factor, w, h))
        return f"x{factor} too large"

    for w, h in SIZES:
        said.clear()
        choices = common.upscale_choices(w, h, limit, too_large)
        assert [c.factor for c in choices] == list(common.FACTORS)
        for c in choices:
            assert c.enabled == _upscale_takes(engine, w, h, c.factor), (w, h, c)
            assert c.reason == ("" if c.enabled else f"x{c.factor} too large")
        assert said == [(c.factor, w * c.factor, h * c.factor) for c in choices if not c.enabled]
    assert all(c.enabled for c in common.upscale_choices(9000, 9000, 0, too_large))  # limit unknown


def test_upscale_choices_need_a_model_for_the_factor_when_the_models_are_known() -> None:
    def too_large(f: int, w: int, h: int) -> str:
        return f"too large x{f}"

    def no_model(f: int) -> str:
        return f"no model x{f}"

    choices = common.upscale_choices(30, 30, 10_000, too_large, model_scales=[2, 8], no_model=no_model)
    assert [(c.factor, c.enabled, c.reason) for c in choices] == [
        (2, True, ""), (4, False, "no model x4"), (8, False, "too large x8")]
    assert [c.enabled for c in common.upscale_choices(30, 30, 0, too_large, [], no_model)] == [False] * 3
    with pytest.raises(TypeError, match="no_model"):
        common.upscale_choices(30, 30, 0, too_large, model_scales=[2])


def test_limits_arithmetic_runs_on_python_3_8() -> None:
    code = ("import impasto_common as c; "
            "print(c.smallest_brush(4000, 3000, 16000000), c.stylize_oversize(4000, 3000, 2.0, 16000000), "
            "[x.enabled for x in c.upscale_choices(4000, 3000, 64000000, lambda f, w, h: '', [2, 4], str)], "
            "c.megapixels(5000), sep='|')")
    expected = "0.87|Oversize(processing=True, width=8000, height=6000)|[True, False, False]|5,000 pixels"
    for python in _old_pythons():
        out = subprocess.run([str(python), "-S", "-c", code], env={"PYTHONPATH": str(COMMON_DIR)},
                             capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == expected, (python, out.stderr)
