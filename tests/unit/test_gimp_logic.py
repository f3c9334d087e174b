"""The GIMP plug-in's pure logic (plugins/gimp/impasto/impasto_logic.py), without GIMP or gi."""

from __future__ import annotations

import pytest
from plugin_loader import load_gimp_logic

logic = load_gimp_logic()
Rect = logic.Rect


@pytest.mark.parametrize(
    ("nick", "alpha", "babl", "wire", "bpp"),
    [
        ("u8-non-linear", True, "R'G'B'A u8", "RGBA_U8", 4),
        ("u8-perceptual", False, "R'G'B' u8", "RGB_U8", 3),
        # Integer linear images go out sRGB-encoded: the networks were trained on those values.
        ("u8-linear", True, "R'G'B'A u8", "RGBA_U8", 4),
        ("u16-non-linear", True, "R'G'B'A u16", "RGBA_U16", 8),
        ("u16-linear", False, "R'G'B' u16", "RGB_U16", 6),
        ("u32-linear", True, "RGBA float", "RGBA_F32_LINEAR", 16),
        ("u32-non-linear", True, "R'G'B'A float", "RGBA_F32", 16),
        ("half-non-linear", True, "R'G'B'A half", "RGBA_F16", 8),
        ("half-linear", True, "RGBA half", "RGBA_F16_LINEAR", 8),
        ("float-linear", True, "RGBA float", "RGBA_F32_LINEAR", 16),
        ("float-perceptual", False, "R'G'B' float", "RGB_F32", 12),
        ("double-linear", False, "RGB float", "RGB_F32_LINEAR", 12),
    ],
)
def test_formats_match_precision(nick: str, alpha: bool, babl: str, wire: str, bpp: int) -> None:
    assert logic.formats_for_precision(nick, alpha) == logic.Formats(babl, wire, bpp)


@pytest.mark.parametrize("nick", ["u64-linear", "u8", "", "float-"])
def test_unknown_precision_is_refused(nick: str) -> None:
    with pytest.raises(ValueError, match="precision"):
        logic.formats_for_precision(nick, True)


def test_wire_names_parse_in_the_backend() -> None:
    from impasto.engine.pixels import PixelFormat

    for nick in ("u8-linear", "u16-non-linear", "half-linear", "float-non-linear"):
        for alpha in (True, False):
            formats = logic.formats_for_precision(nick, alpha)
            fmt = PixelFormat.parse(formats.wire)
            assert fmt.name == formats.wire
            assert fmt.buffer_size(1, 1) == formats.bytes_per_pixel


def test_no_selection_sends_the_whole_layer() -> None:
    # mask_intersect reports the whole drawable when nothing is selected: no margin, no clipping.
    assert logic.work_region(Rect(0, 0, 40, 30), 40, 30, 32) == Rect(0, 0, 40, 30)


def test_selection_gets_a_margin_clipped_to_the_layer() -> None:
    assert logic.work_region(Rect(35, 23, 20, 16), 100, 80, 32) == Rect(3, 0, 84, 71)
    assert logic.work_region(Rect(10, 10, 5, 5), 100, 100, 2) == Rect(8, 8, 9, 9)


def test_selection_missing_the_layer_means_nothing_to_do() -> None:
    assert logic.work_region(None, 10, 10, 4) is None
    assert logic.work_region(Rect(0, 0, 0, 5), 10, 10, 4) is None
    assert logic.work_region(Rect(20, 20, 5, 5), 10, 10, 4) is None


def test_stylized_layer_sits_over_its_source_region() -> None:
    assert logic.stylize_placement(Rect(3, 0, 84, 71), (5, 7)) == Rect(8, 7, 84, 71)
    assert logic.stylize_placement(Rect(0, 0, 4, 4), (-3, -2)) == Rect(-3, -2, 4, 4)


def test_rect_scale_and_intersect() -> None:
    assert Rect(1, 2, 3, 4).scale(4) == Rect(4, 8, 12, 16)
    assert Rect(0, 0, 10, 10).intersect(Rect(5, 5, 10, 10)) == Rect(5, 5, 5, 5)
    assert Rect(0, 0, 10, 10).intersect(Rect(20, 20, 1, 1)).empty


@pytest.mark.parametrize(("choice", "factor"), [("x2", 2), ("x4", 4), ("X8", 8), (4, 4), ("×2", 2)])
def test_parse_factor(choice: str | int, factor: int) -> None:
    assert logic.parse_factor(choice) == factor


@pytest.mark.parametrize("choice", ["x3", "", "four", 16])
def test_parse_factor_refuses_other_scales(choice: str | int) -> None:
    with pytest.raises(ValueError, match="x2, x4, x8"):
        logic.parse_factor(choice)


def test_backend_address_from_environment() -> None:
    assert logic.backend_address({}) == ("127.0.0.1:50051", None)
    env = {"IMPASTO_ADDRESS": " 127.0.0.1:6000 ", "IMPASTO_TOKEN": "s3cret"}
    assert logic.backend_address(env) == ("127.0.0.1:6000", "s3cret")


def test_default_address_matches_the_client() -> None:
    from impasto_client.client import DEFAULT_ADDRESS  # plugins/common is on the path (plugin_loader)

    assert logic.DEFAULT_ADDRESS == DEFAULT_ADDRESS


def _job(w: int = 3, h: int = 2, nick: str = "u16-non-linear") -> object:
    return logic.ImageJob(Rect(5, 6, w, h), logic.formats_for_precision(nick, True))


def test_upscale_request() -> None:
    job = _job()
    data = bytes(3 * 2 * 8)
    assert logic.upscale_request(job, data, 4, " srgan-x4 ") == {
        "data": data, "width": 3, "height": 2, "pixel_format": "RGBA_U16", "scale": 4, "model": "srgan-x4"}


def test_request_refuses_a_short_read() -> None:
    with pytest.raises(ValueError, match="read 47 bytes"):
        logic.upscale_request(_job(), bytes(47), 2, "")


def test_stylize_request() -> None:
    job = _job(nick="float-linear")
    request = logic.stylize_request(job, bytes(3 * 2 * 16), "udnie", 0.5, True, 20)
    assert request["pixel_format"] == "RGBA_F32_LINEAR"
    assert (request["style"], request["strength"], request["preserve_colors"], request["refine"]) == (
        "udnie", 0.5, True, 20)
    with pytest.raises(ValueError, match="style"):
        logic.stylize_request(job, bytes(96), " ", 1.0, False, 0)
    with pytest.raises(ValueError, match="strength"):
        logic.stylize_request(job, bytes(96), "udnie", 1.5, False, 0)


def test_check_result_accepts_the_expected_image() -> None:
    job = _job()
    data = bytes(12 * 8 * 8)
    assert logic.check_result((data, 12, 8, "RGBA_U16"), job, 4) == data


@pytest.mark.parametrize(
    ("result", "match"),
    [
        ((bytes(12 * 8 * 8), 12, 8, "RGBA_U8"), "expected 12x8 RGBA_U16"),
        ((bytes(6 * 4 * 8), 6, 4, "RGBA_U16"), "expected 12x8"),
        ((bytes(10), 12, 8, "RGBA_U16"), "10 bytes"),
    ],
)
def test_check_result_refuses_a_mismatch(result: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        logic.check_result(result, _job(), 4)


def test_progress_moves_forward_across_jobs_and_stages() -> None:
    seen: list[float] = []
    second = logic.progress_mapper(seen.append, 1, 2, ("stylize", "refine"))
    second("queued", 0.0, 3)
    second("stylize", 0.5, 0)
    second("refine", 0.0, 0)
    second("stylize", 0.2, 0)  # an out-of-order report must not move the bar back
    second("tile", 1.0, 0)  # unknown stage: counts as the latest known one
    assert seen == pytest.approx([0.625, 0.75, 1.0])


def test_progress_of_the_first_job() -> None:
    seen: list[float] = []
    first = logic.progress_mapper(seen.append, 0, 4, ("upscale",))
    first("loading", 0.5, 0)
    first("upscale", 0.5, 0)
    first("upscale", 1.5, 0)  # clamped
    assert seen == pytest.approx([0.125, 0.25])


def test_flatten_walks_groups_depth_first() -> None:
    tree = {"a": ["a1", "a2"], "a1": ["a1x"], "b": []}
    assert logic.flatten(["a", "b"], lambda n: tree.get(n, [])) == ["a", "a1", "a1x", "a2", "b"]


def test_user_message_prefers_the_backend_message() -> None:
    class BackendError(Exception):
        message = "no Impasto backend is running at 127.0.0.1:50051; start it with `impasto serve`"

    assert logic.user_message(BackendError("x")).startswith("Impasto: no Impasto backend is running")
    assert logic.user_message(ValueError("bad")) == "Impasto: bad"


def test_requests_accept_gimps_none_for_empty_strings() -> None:
    # GIMP restores a stored empty string argument as None.
    assert logic.upscale_request(_job(), bytes(48), 2, None)["model"] == ""
    with pytest.raises(ValueError, match="style"):
        logic.stylize_request(_job(), bytes(48), None, 1.0, False, 0)


# -- brush size ---------------------------------------------------------------------------------------

def test_brush_size_is_the_inverse_of_the_processing_scale() -> None:
    from impasto_common import SCALE

    assert (logic.BRUSH.low, logic.BRUSH.high, logic.BRUSH.default) == (0.25, 4.0, 1.0)
    assert logic.brush_to_scale(2.0) == 0.5 and logic.brush_to_scale(0.25) == SCALE.high
    assert logic.brush_to_scale(4.0) == SCALE.low and logic.brush_to_scale(1.0) == SCALE.default
    with pytest.raises(ValueError, match="brush size must be between 0.25 and 4"):
        logic.brush_to_scale(8.0)


def test_stylize_request_carries_the_scale_of_the_brush() -> None:
    job = _job()
    assert logic.stylize_request(job, bytes(48), "udnie", 1.0, False, 0)["scale"] == 1.0
    assert logic.stylize_request(job, bytes(48), "udnie", 1.0, False, 0, 2.0)["scale"] == 0.5


def test_the_backend_takes_the_brush_scale() -> None:
    from impasto.limits import SCALE_MAX, SCALE_MIN

    assert SCALE_MIN <= logic.brush_to_scale(logic.BRUSH.high) < logic.brush_to_scale(logic.BRUSH.low) <= SCALE_MAX


# -- limits -------------------------------------------------------------------------------------------

class Model:
    def __init__(self, name: str, scale: int = 1, display_name: str = "") -> None:
        self.name, self.scale, self.display_name = name, scale, display_name


SR = [Model("srgan-x2", 2, "SRGAN x2"), Model("srgan-x4", 4, "SRGAN x4"), Model("impasto-x4", 4, "Impasto x4")]
MP16 = 16_000_000  # the 12 MP photo fits, its x2 (48 MP) does not


def test_stylize_fits_or_says_what_to_change() -> None:
    assert logic.stylize_problem(4000, 3000, 1.0, MP16) == ""
    assert logic.stylize_problem(4000, 3000, 1.0, 0) == ""  # limit unknown: the backend decides
    # A smaller brush processes the layer larger: 0.5 paints a 12 MP layer at 48 MP.
    problem = logic.stylize_problem(4000, 3000, 0.5, MP16)
    assert problem.startswith("at brush size 0.5 the layer is painted at 8000×6000 (48 MP)")
    assert problem.endswith("use a brush size of 0.87 or more")
    assert logic.stylize_problem(4000, 3000, 0.87, MP16) == ""
    assert logic.stylize_problem(4000, 3000, 0.86, MP16) != ""
    assert "select a smaller part" in logic.stylize_problem(5000, 4000, 4.0, MP16)


def test_smallest_brush_really_fits() -> None:
    for w, h, limit in [(4000, 3000, MP16), (333, 777, 300_000), (640, 480, 400_000), (640, 480, 64_000_000)]:
        brush = logic.smallest_brush(w, h, limit)
        assert logic.stylize_problem(w, h, brush, limit) == ""
        if brush > logic.BRUSH.low:
            assert logic.stylize_problem(w, h, round(brush - 0.01, 2), limit) != ""


def test_factors_the_limit_allows() -> None:
    choices = logic.upscale_choices([(4000, 3000)], 64_000_000)
    assert [(c.factor, c.enabled) for c in choices] == [(2, True), (4, False), (8, False)]
    assert choices[1].reason == "×4 would make 16000×12000 (192 MP); the backend makes at most 64 MP"
    # The largest of several layers decides.
    choices = logic.upscale_choices([(10, 10), (100, 50), (20, 20)], 100 * 50 * 16)
    assert [c.enabled for c in choices] == [True, True, False]
    assert all(c.enabled for c in logic.upscale_choices([(100, 100)], 0))


def test_pick_factor_prefers_the_wanted_then_the_nearest_below() -> None:
    choices = logic.upscale_choices([(4000, 3000)], 64_000_000)
    assert logic.pick_factor(choices, 4) == 2
    assert logic.pick_factor(choices, 2) == 2
    assert logic.pick_factor(logic.upscale_choices([(10, 10)], 0), 8) == 8
    assert logic.pick_factor(logic.upscale_choices([(9000, 9000)], MP16), 4) is None


def test_models_are_filtered_by_the_factor() -> None:
    assert logic.model_choices(SR, 4) == [("", "Default for ×4"), ("bicubic", "Bicubic (no network)"),
                                          ("srgan-x4", "SRGAN x4"), ("impasto-x4", "Impasto x4")]
    # No model for x8: only plain resampling is offered.
    assert logic.model_choices(SR, 8) == [("bicubic", "Bicubic (no network)")]


def test_upscale_problems_before_sending() -> None:
    photo = [(4000, 3000)]  # 12 MP
    assert logic.upscale_problem(photo, 2, "", SR, 64_000_000) == ""
    assert logic.upscale_problem(photo, 4, "", SR, 64_000_000) == (
        "×4 would make 16000×12000 (192 MP); the backend makes at most 64 MP: choose ×2, or select a smaller "
        "part of the image")
    assert logic.upscale_problem([(10, 10)], 4, "srgan-x2", SR, 0) == (
        "model 'srgan-x2' upscales ×2, not ×4: choose ×2, or another model")
    assert "no model that upscales ×8 (its models upscale ×2, ×4)" in logic.upscale_problem([(10, 10)], 8, "", SR, 0)
    assert logic.upscale_problem([(10, 10)], 8, "bicubic", SR, 0) == ""
    assert logic.upscale_problem([(10, 10)], 4, "not-listed", SR, 0) == ""  # the backend names it
    nothing = logic.upscale_problem([(9000, 9000)], 2, "", SR, MP16)
    assert nothing.startswith("this image is too large for the backend to upscale: ×2 would make 18000×18000")
    assert "Select a smaller part of the image" in nothing


def test_unknown_style_is_named_with_what_the_backend_has() -> None:
    styles = [Model("udnie"), Model("wave")]
    assert logic.style_problem("udnie", styles) == ""
    assert logic.style_problem("munch", styles) == "the backend has no style 'munch'; it has udnie, wave"
    assert logic.style_problem("munch", []) == ""


def test_megapixels() -> None:
    assert [logic.megapixels(n) for n in (5000, 1_500_000, 12_000_000, 64_000_000)] == [
        "5,000 pixels", "1.5 MP", "12 MP", "64 MP"]


# -- naming -------------------------------------------------------------------------------------------

def test_layer_names_follow_krita() -> None:
    assert logic.layer_name("The Scream", logic.STYLIZE) == "The Scream"
    assert logic.layer_name("  ", logic.STYLIZE) == "Impasto"
    assert logic.layer_name("photo", logic.UPSCALE, 2) == "photo ×2"
    assert logic.layer_name("", logic.UPSCALE, 4) == "Untitled ×4"
    # a name already in the image gets the next free number, as in Krita
    assert logic.layer_name("The Scream", logic.STYLIZE, existing=["The Scream"]) == "The Scream 2"
    assert logic.layer_name("The Scream", logic.STYLIZE, existing=["The Scream", "The Scream 2"]) == "The Scream 3"


def test_display_name_and_upscaled_file_name() -> None:
    styles = [Model("scream", display_name="The Scream"), Model("bare")]
    assert logic.display_name(styles, "scream") == "The Scream"
    assert logic.display_name(styles, "bare") == "bare"
    assert logic.display_name(styles, "other") == "other"
    assert logic.upscaled_file_name("photo.jpg", 2) == "photo ×2.xcf"
    assert logic.upscaled_file_name("my.holiday.png", 8) == "my.holiday ×8.xcf"


# -- progress in the status bar -----------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _status(count: int = 1, stages: tuple[str, ...] = ("stylize",)) -> tuple[object, list, Clock]:
    shown: list[tuple[str | None, float | None]] = []
    clock = Clock()
    return logic.ProgressStatus(lambda t, f: shown.append((t, f)), count, stages, clock), shown, clock


def test_status_shows_the_queue_then_the_fraction_with_time_left() -> None:
    status, shown, clock = _status()
    report = status.job(0, "The Scream")
    report("queued", 0.0, 2)
    report("queued", 0.0, 2)  # nothing new: nothing shown
    report("queued", 0.0, 1)
    report("queued", 0.0, 0)
    report("loading", 0.0, 0)
    report("stylize", 0.0, 0)  # the work begins: the clock starts
    clock.now += 0.5
    report("stylize", 0.1, 0)  # too early to tell the rate
    clock.now += 1.5
    report("stylize", 0.25, 0)  # 25% in 2 s: 6 s left, shown as 10 s
    clock.now += 2.0
    report("stylize", 0.5, 0)
    assert shown == [
        ("The Scream: waiting for the backend, 2 jobs ahead", None),
        ("The Scream: waiting for the backend, 1 job ahead", None),
        ("The Scream: waiting for the backend", None),
        ("The Scream: loading the model", None),
        ("The Scream: 0%", None),
        ("The Scream: 10%", 0.1),
        ("The Scream: 25%, about 10 s left", 0.25),
        ("The Scream: 50%, about 5 s left", 0.5),
    ]


def test_status_minutes_and_stages() -> None:
    status, shown, clock = _status(2, ("stylize", "refine"))
    report = status.job(1, "Layer 2")  # the second of two jobs starts at half way
    report("stylize", 0.0, 0)
    clock.now += 60
    report("refine", 0.2, 0)  # 0.8 of the whole, from 0.5 in a minute: 40 s more
    assert shown[-1] == ("Layer 2: refining, 80%, about 40 s left", 0.8)
    clock.now += 600
    report("refine", 0.4, 0)  # 0.85 after 11 minutes: 0.35 in 660 s, 0.15 left
    assert shown[-1] == ("Layer 2: refining, 85%, about 5 min left", 0.85)
    report("refine", 0.4, 0)
    assert len(shown) == 3


@pytest.mark.parametrize(("elapsed", "done", "left", "text"), [
    (0.5, 0.5, 0.5, ""), (10, 0.01, 0.99, ""), (10, 0.5, 0.0, ""), (2, 0.5, 0.5, "about 5 s left"),
    (30, 0.25, 0.75, "about 90 s left"), (100, 0.4, 0.6, "about 3 min left")])
def test_time_left(elapsed: float, done: float, left: float, text: str) -> None:
    assert logic.time_left(elapsed, done, left) == text
