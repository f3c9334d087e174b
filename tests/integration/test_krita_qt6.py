"""The Krita docker and dialog under PyQt6 (what Krita 6 embeds), with the fake Krita API, under Xvfb,
against a real backend: krita_qt6_driver.py does it in a child process and reports here. PyQt6 comes
from PyPI (the `test` extra); the PyQt5 side is tested in real Krita (test_krita.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from editors import unavailable

pytestmark = [pytest.mark.slow]

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def qt6(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if importlib.util.find_spec("PyQt6") is None:
        unavailable("PyQt6 is not installed: pip install -e '.[test]'")
    if shutil.which("xvfb-run") is None:
        unavailable("xvfb-run not found: install xvfb and xauth (.ci/install-krita.sh)")
    out = tmp_path_factory.mktemp("qt6")
    env = dict(os.environ, IMPASTO_QT_API="PyQt6", QT_QPA_PLATFORM="xcb")
    proc = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", sys.executable,
                           str(HERE / "krita_qt6_driver.py"), str(out)],
                          env=env, capture_output=True, text=True, timeout=400)
    results_file = out / "results.json"
    if not results_file.exists():
        pytest.fail(f"the PyQt6 driver wrote nothing (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-3000:]}")
    results = json.loads(results_file.read_text())
    assert "error" not in results, results["error"]
    assert results.get("done"), results
    results["out"] = str(out)
    return results


def test_the_plugin_runs_on_pyqt6(qt6: dict) -> None:
    assert qt6["qt"].startswith("PyQt6 6.") and " on Qt 6." in qt6["qt"]
    c = qt6["connected"]
    assert c["dot"] == "green" and c["apply"] and c["gallery"] >= 2 and c["brush"] == "100%"
    assert not c["settings_open"]  # folded once a backend answers
    assert (Path(qt6["out"]) / "docker-qt6.png").stat().st_size > 1000


def test_live_preview_shows_in_the_docker(qt6: dict) -> None:
    w, h, shown = qt6["preview"]
    assert (w, h) == (64, 48) and shown


def test_apply_through_the_backend_with_progress_and_a_still_layout(qt6: dict) -> None:
    busy, applied = qt6["busy"], qt6["applied"]
    assert busy["progress_visible"] and busy["cancel"] and not busy["apply"]
    assert busy["label"].startswith("Applying")
    assert len(applied["names"]) == len(applied["before"]) + 1
    assert applied["message"].startswith("Added layer “") and not applied["progress_visible"]
    assert not applied["apply_moved"]
    long = qt6["long_message"]
    assert long["height_same"] and long["lines"] == 2 and long["tooltip_whole"] and not long["apply_moved"]
    assert qt6["undo_message_seconds"] < 2


def test_restyle_uses_the_source(qt6: dict) -> None:
    assert qt6["restyled"]["message"].endswith("from “Paint”, which “" + qt6["applied"]["message"][13:-2]
                                               + "” was made from.")


def test_limits_disable_what_does_not_fit(qt6: dict) -> None:
    lim = qt6["limits"]
    assert lim["enabled"] == [False, False, False] and not lim["upscale"]
    assert "8192×8192" in lim["tooltip"] and "64 MP" in lim["tooltip"] and "--" not in lim["tooltip"]


def test_dialog_and_popup(qt6: dict) -> None:
    assert qt6["dialog"] == {"accepted": True, "styles": qt6["connected"]["gallery"],
                             "title": "Apply Impasto style"}
    assert qt6["popup"] == 50


def test_status_follows_the_backend_within_seconds(qt6: dict) -> None:
    assert qt6["red_seconds"] <= 4.0
    assert qt6["green_seconds_after_start"] <= 4.0
