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
