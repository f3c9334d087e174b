"""Pure plugin logic: pixel formats, selections, settings, background jobs, the backend process."""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
import time
from array import array

import pytest
from plugin_loader import load, load_common

formats = load("formats")
jobs = load("jobs")
settings_mod = load("settings")
server_process = load("server_process")


@pytest.mark.parametrize(
    ("depth", "profile", "expected"),
    [
        ("U8", "sRGB-elle-V2-srgbtrc.icc", "BGRA_U8"),
        ("U16", "sRGB-elle-V2-srgbtrc.icc", "BGRA_U16"),
        ("F16", "sRGB-elle-V2-g10.icc", "RGBA_F16_LINEAR"),
        ("F32", "sRGB-elle-V2-g10.icc", "RGBA_F32_LINEAR"),
        ("F32", "", "RGBA_F32_LINEAR"),  # unknown float profile: linear, Krita's float default
        ("F32", "sRGB-elle-V2-srgbtrc.icc", "RGBA_F32"),  # a gamma-encoded float document
        ("U16", "sRGB-elle-V2-g10.icc", "BGRA_U16_LINEAR"),
        ("U8", "", "BGRA_U8"),
    ],
)
def test_wire_format_per_depth_and_profile(depth: str, profile: str, expected: str) -> None:
    assert formats.wire_format("RGBA", depth, profile) == expected


@pytest.mark.parametrize(("model", "word"), [("CMYKA", "CMYK"), ("LABA", "Lab"), ("GRAYA", "Grayscale")])
def test_non_rgb_models_get_a_clear_message(model: str, word: str) -> None:
    with pytest.raises(formats.UnsupportedDocument) as info:
        formats.wire_format(model, "U8", "")
    assert word in str(info.value) and "Convert Image Color Space" in str(info.value)


def test_rect_intersection_handles_offsets_and_disjoint_rects() -> None:
    a = formats.Rect(-10, -5, 30, 20)
    assert a.intersect(formats.Rect(0, 0, 8, 6)) == formats.Rect(0, 0, 8, 6)
    assert a.intersect(formats.Rect(15, 10, 100, 100)) == formats.Rect(15, 10, 5, 5)
    assert a.intersect(formats.Rect(100, 100, 5, 5)).empty


def test_apply_selection_u8_keeps_colour_and_scales_alpha() -> None:
    data = bytes([10, 20, 30, 200] * 3)
    out = formats.apply_selection(data, bytes([255, 128, 0]), "BGRA_U8")
    assert out[0:4] == bytes([10, 20, 30, 200])  # fully selected: bit for bit
    assert out[4:7] == bytes([10, 20, 30]) and out[7] == (200 * 128 + 127) // 255
    assert out[8:11] == bytes([10, 20, 30]) and out[11] == 0


def test_apply_selection_full_mask_is_identity_for_every_depth() -> None:
    for fmt, data in [("BGRA_U16", array("H", [1, 2, 3, 65535]).tobytes()),
                      ("RGBA_F32_LINEAR", array("f", [0.5, 1.5, -0.1, 1.0]).tobytes()),
                      ("RGBA_F16_LINEAR", struct.pack("<4e", 0.25, 0.5, 2.0, 1.0))]:
        assert formats.apply_selection(data, b"\xff", fmt) == data


def test_apply_selection_u16_f32_f16() -> None:
    u16 = array("H", [1, 2, 3, 65535]).tobytes()
    assert array("H", formats.apply_selection(u16, b"\x00", "BGRA_U16")).tolist() == [1, 2, 3, 0]
    f32 = array("f", [0.5, 1.5, -0.1, 1.0]).tobytes()
    out = array("f", formats.apply_selection(f32, bytes([51]), "RGBA_F32_LINEAR")).tolist()
    assert out[:2] == [0.5, 1.5] and out[3] == pytest.approx(0.2)
    f16 = struct.pack("<4e", 0.25, 0.5, 2.0, 1.0)
    assert struct.unpack("<4e", formats.apply_selection(f16, bytes([0]), "RGBA_F16_LINEAR")) == (
        0.25, 0.5, 2.0, 0.0)


def test_one_layer_naming_rule_for_every_editor() -> None:
    layer_name = load_common().layer_name
    assert layer_name("The Scream", "stylize", existing=["Background"]) == "The Scream"
    assert layer_name("Udnie", existing=["Udnie", "Udnie 2"]) == "Udnie 3"
    assert layer_name("  ") == "Impasto"
    assert layer_name("photo", "upscale", 2) == "photo ×2"
    assert layer_name("", "upscale", 4, existing=["Untitled ×4"]) == "Untitled ×4 2"


def test_settings_keep_brush_scale_and_the_docker_switches() -> None:
    store: dict[tuple[str, str], str] = {}
    s = settings_mod.Settings(scale=0.5, from_source=False, live_preview=False)
    s.save(lambda g, n, v: store.__setitem__((g, n), v))
    loaded = settings_mod.Settings.load(lambda g, n, d: store.get((g, n), d))
    assert loaded == s and loaded.options.scale == 0.5
    store[("impasto", "scale")] = "9"  # past SCALE.high: clamped, never sent as is
    assert settings_mod.Settings.load(lambda g, n, d: store.get((g, n), d)).scale == 4.0


def test_settings_round_trip_and_bad_values() -> None:
    store: dict[tuple[str, str], str] = {}
    s = settings_mod.Settings(address="127.0.0.1:6000", token="t", strength=0.25, preserve_colors=True,
                              refine=20, upscale=4, last_style="wave")
    s.save(lambda g, n, v: store.__setitem__((g, n), v))
    loaded = settings_mod.Settings.load(lambda g, n, d: store.get((g, n), d))
    assert loaded == s
    store[("impasto", "strength")] = "lots"
    store[("impasto", "upscale")] = "3"
    loaded = settings_mod.Settings.load(lambda g, n, d: store.get((g, n), d))
    assert loaded.strength == 1.0 and loaded.upscale == 2


def test_job_reports_progress_then_result_on_poll() -> None:
    def work(progress, cancel):
        progress("stylize", 0.5, 0)
        return 42

    job = jobs.Job("t", work).start()
    job.join(5)
    events = job.poll()
    assert [e.kind for e in events] == ["progress", "done"] and events[-1].result == 42 and job.finished


def test_job_failure_and_cancel_event_reach_the_poller() -> None:
    started = threading.Event()

    def work(progress, cancel):
        started.set()
        assert cancel.wait(5)
        raise RuntimeError("stopped")

    job = jobs.Job("t", work).start()
    started.wait(5)
    assert job.poll() == [] and not job.finished
    job.cancel()
    job.join(5)
    (event,) = job.poll()
    assert event.kind == "error" and isinstance(event.error, RuntimeError) and job.cancelled


def test_server_process_command_and_stop(tmp_path) -> None:
    assert server_process.serve_command("/py", "127.0.0.1:1", "tok") == [
        "/py", "-m", "impasto", "serve", "--address", "127.0.0.1:1", "--token", "tok"]
    calls = []

    def popen(cmd, **kw):
        calls.append((cmd, kw))
        # A stand-in backend: sleeps until terminated.
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], **kw)

    proc = server_process.ServerProcess(popen)
    with pytest.raises(ValueError):
        proc.start("", "127.0.0.1:1")
    with pytest.raises(ValueError):
        proc.start(str(tmp_path / "missing-python"), "127.0.0.1:1")
    proc.start(sys.executable, "127.0.0.1:1")
    assert proc.running and calls[0][0][:3] == [sys.executable, "-m", "impasto"]
    assert "PYTHONPATH" not in calls[0][1]["env"]
    t = time.monotonic()
    proc.stop()
    assert not proc.running and time.monotonic() - t < 5
