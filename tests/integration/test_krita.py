"""The Krita plugin in real Krita (kritarunner, offscreen) against a real backend on loopback.

One kritarunner run per Krita (it takes ~10 s to start) drives every case through the plugin as installed
by `impasto plugin install krita`, with only that folder on Krita's Python path. The new layer's pixels
must equal what the backend returns for the same input through the Python client.

Every case runs on two Kritas: the host's (Debian 12: Krita 5.1.5, Python 3.11) and Debian 13's Krita
5.2.9 (Python 3.13) in a chroot that `.ci/install-krita.sh` sets up at $IMPASTO_KRITA_ROOT (default
/var/cache/impasto/krita-root). A missing one skips, or fails under IMPASTO_REQUIRE_EDITORS=1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from editors import unavailable
from impasto.cli import plugin_install
from impasto.engine.pixels import PixelBuffer, PixelFormat
from impasto.serve.client import Client

pytestmark = [pytest.mark.krita, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
STYLE = "udnie"
CASES = [
    {"name": "u8", "depth": "U8", "style": STYLE},
    {"name": "u16", "depth": "U16", "style": STYLE},
    {"name": "f16", "depth": "F16", "style": STYLE},
    {"name": "f32", "depth": "F32", "style": STYLE},
    {"name": "selection", "depth": "U8", "style": STYLE, "selection": [5, 3, 12, 9]},
    # Painted over 30x20 and moved up-left: the layer sticks out of the 24x16 canvas on every side.
    {"name": "offset", "depth": "U8", "style": STYLE, "layer_size": [30, 20], "offset": [-4, -3]},
    {"name": "down", "depth": "U8", "style": STYLE, "address": "DOWN"},
    {"name": "cmyk", "depth": "U8", "model": "CMYKA", "style": STYLE},
    {"name": "upscale", "depth": "U8", "op": "upscale", "scale": 2, "save_as": "photo.kra"},
    {"name": "cancel", "depth": "U8", "style": STYLE, "op": "cancel", "size": [64, 48]},
    {"name": "brush", "depth": "U8", "style": STYLE, "scale": 0.5, "size": [40, 32]},
    {"name": "restyle", "depth": "U8", "style": STYLE, "style2": "wave", "op": "restyle"},
    {"name": "preview", "depth": "U8", "style": STYLE, "op": "preview", "size": [96, 64]},
    {"name": "limits", "depth": "U8", "op": "limits", "size": [4096, 4096]},
]
DEFAULT_CHROOT = Path("/var/cache/impasto/krita-root")  # where .ci/run has install-krita.sh put it
KRITAS = ["host", "chroot"]


def _expected_version(which: str) -> str:
    """Debian 12 hosts (CI) have Krita 5.1, the chroot (Debian 13) and Debian 13 hosts 5.2."""
    if which == "chroot":
        return "5.2."
    debian = Path("/etc/debian_version").read_text().strip() if Path("/etc/debian_version").exists() else ""
    return {"12": "5.1.", "13": "5.2."}.get(debian.split(".")[0], "")


def _krita_root() -> Path:
    """The chroot with Debian 13's Krita: $IMPASTO_KRITA_ROOT, else the default if it is set up."""
    root = Path(os.environ.get("IMPASTO_KRITA_ROOT", "") or DEFAULT_CHROOT)
    if not (root / ".impasto-krita-ready").exists() or not (root / "usr/bin/kritarunner").exists():
        unavailable(f"no Krita 5.2 chroot at {root}: run IMPASTO_KRITA_ROOT={root} .ci/install-krita.sh")
    return root


def _kritarunner(which: str) -> tuple[str, Path | None]:
    if which == "chroot":
        return "kritarunner", _krita_root()
    path = shutil.which("kritarunner")
    if path is None:
        unavailable("kritarunner not found: install Krita (apt-get install krita, or .ci/install-krita.sh)")
    return path, None


def _require(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        unavailable(f"{', '.join(missing)} not found: install them (.ci/install-krita.sh)")


@pytest.fixture(scope="module", params=KRITAS)
def krita_run(
    request: pytest.FixtureRequest, backend: str, unused_address: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict, Path]]:
    runner, root = _kritarunner(request.param)
    if root is None:
        base = tmp_path_factory.mktemp("krita")
    else:  # files must lie inside the chroot; paths given to Krita are then relative to it
        (root / "tmp").mkdir(exist_ok=True)
        base = Path(tempfile.mkdtemp(prefix="impasto-krita-", dir=root / "tmp"))

    def seen(path: Path) -> str:
        return "/" + str(path.relative_to(root)) if root else str(path)

    wheels = os.environ.get("IMPASTO_WHEELS")
    pykrita = base / "share" / "krita" / "pykrita"
    plugin_install.install_krita(pykrita, Path(wheels) if wheels else None)
    shutil.copy(HERE / "krita_driver.py", base / "krita_driver.py")
    out = base / "out"
    out.mkdir()
    cases = [dict(c, address=unused_address) if c.get("address") == "DOWN" else c for c in CASES]
    spec = base / "spec.json"
    spec.write_text(json.dumps({"out": seen(out), "address": backend, "cases": cases}))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": seen(base / "home"),  # a fresh Krita profile: no user plugins or settings leak in
        "XDG_DATA_HOME": seen(base / "share"),
        "XDG_CONFIG_HOME": seen(base / "config"),
        "XDG_RUNTIME_DIR": seen(base / "run"),
        "QT_QPA_PLATFORM": "offscreen",
        # Only the driver and the installed plugin folder: nothing from the venv or the checkout.
        "PYTHONPATH": os.pathsep.join([seen(base), seen(pykrita)]),
        "IMPASTO_KRITA_SPEC": seen(spec),
    }
    (base / "run").mkdir(mode=0o700)

    def kritarunner(function: str) -> subprocess.CompletedProcess:
        command = [runner, "-s", "krita_driver", "-f", function]
        if root is not None:
            # The chroot shares the network namespace, so the backend on 127.0.0.1 outside is reachable.
            command = ["chroot", str(root), "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()), *command]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)

    proc = kritarunner("main")
    results_file = out / "results.json"
    if not results_file.exists():
        pytest.fail(f"kritarunner wrote no results (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-3000:]}")
    results = json.loads(results_file.read_text())
    assert "fatal" not in results, results.get("fatal")
    assert "running" not in results, (f"Krita stopped (rc {proc.returncode}) during case {results['running']!r}:\n"
                                      f"{proc.stderr[-3000:]}")
    # Krita must also exit cleanly: a crash on the way out means something of Krita's was freed late.
    assert proc.returncode == 0, f"kritarunner exited with {proc.returncode}:\n{proc.stderr[-3000:]}"
    # The saved .kra reopened in a second, fresh Krita: the plugin's map of results to sources is in the file.
    restyled = results.get("restyle", {}).get("restyled", {})
    if restyled.get("saved"):
        spec.write_text(json.dumps({"out": seen(out), "reopen": [restyled["saved"]]}))
        proc = kritarunner("reopen")
        reopened = json.loads((out / "reopen.json").read_text()) if (out / "reopen.json").exists() else {}
        assert proc.returncode == 0 and "fatal" not in reopened, (
            f"reopening {restyled['saved'][0]} in Krita failed (rc {proc.returncode}): {reopened.get('fatal')}\n"
            f"{proc.stderr[-3000:]}")
        restyled["source_after_reopen"] = reopened[restyled["saved"][0]]
    results["which"] = request.param
    yield results, out
    if root is not None:
        shutil.rmtree(base, ignore_errors=True)


def _case(krita_run: tuple[dict, Path], name: str) -> tuple[dict, Path]:
    results, out = krita_run
    facts = results[name]
    assert "error" not in facts, facts.get("error")
    return facts, out


def _expected(address: str, facts: dict, data: bytes) -> bytes:
    x, y, w, h = facts["rect"]
    buf = PixelBuffer.from_bytes(data, w, h, PixelFormat.parse(facts["format"]))
    with Client(address) as client:
        result = client.stylize(buf, STYLE)
    return result.tobytes()


def test_installed_plugin_imports_only_what_the_installer_put_there(krita_run: tuple[dict, Path]) -> None:
    results, _ = krita_run
    imp = results["imports"]
    for key in ("plugin", "impasto_client", "impasto_common", "grpclib", "protobuf"):
        assert "/share/krita/pykrita/impasto/" in imp[key], (key, imp[key])
    assert imp["protobuf_impl"] == "python"
    assert imp["python"].startswith("3.")
    # The Krita we meant, with the plugin on its Qt through qt.py (Krita 5: PyQt5).
    assert imp["krita"].startswith(_expected_version(results["which"])), imp["krita"]
    assert imp["qt"].startswith("PyQt5 5.15") and " on Qt 5.15" in imp["qt"], imp["qt"]


# Krita's default 16-bit profile is linear (sRGB-elle-V2-g10.icc), so those pixels travel as linear.
@pytest.mark.parametrize(("name", "fmt"), [("u8", "BGRA_U8"), ("u16", "BGRA_U16_LINEAR"),
                                           ("f16", "RGBA_F16_LINEAR"), ("f32", "RGBA_F32_LINEAR"),
                                           ("selection", "BGRA_U8"),
                                           ("offset", "BGRA_U8")])
def test_new_layer_equals_backend_result_and_original_is_unchanged(
    krita_run: tuple[dict, Path], backend: str, name: str, fmt: str
) -> None:
    facts, out = _case(krita_run, name)
    assert facts["started"] and facts["finished"], facts["messages"]
    assert facts["format"] == fmt
    with Client(backend) as client:
        display = next(m.display_name or m.name for m in client.models() if m.name == STYLE)
    # Named after the style, right above the source layer.
    assert [n for n in facts["names_after"] if n != display] == facts["names_before"]
    assert facts["new_index"] == facts["names_before"].index("Paint") + 1
    data = (out / f"{name}.input").read_bytes()
    assert (out / f"{name}.result").read_bytes() == _expected(backend, facts, data)
    assert (out / f"{name}.after").read_bytes() == (out / f"{name}.before").read_bytes()


def test_selection_limits_the_new_layer(krita_run: tuple[dict, Path]) -> None:
    facts, _ = _case(krita_run, "selection")
    assert facts["rect"] == [5, 3, 12, 9]
    x, y, w, h = facts["new_bounds"]
    assert x >= 5 and y >= 3 and x + w <= 17 and y + h <= 12


def test_offset_layer_beyond_the_canvas(krita_run: tuple[dict, Path]) -> None:
    facts, _ = _case(krita_run, "offset")
    assert facts["bounds"] == [-4, -3, 30, 20] and facts["rect"] == [-4, -3, 30, 20]


def test_backend_not_running_shows_message_and_changes_nothing(krita_run: tuple[dict, Path]) -> None:
    facts, out = _case(krita_run, "down")
    assert facts["names_after"] == facts["names_before"]
    errors = [m for m in facts["messages"] if m[0] == "show_message" and m[2] is True]
    assert errors and "not running" in errors[-1][1]
    assert (out / "down.after").read_bytes() == (out / "down.before").read_bytes()


def test_cancelled_job_leaves_the_document_unchanged(krita_run: tuple[dict, Path]) -> None:
    facts, out = _case(krita_run, "cancel")
    assert facts["started"] and facts["finished"] and facts["busy_at_cancel"], facts["messages"]
    assert facts["names_after"] == facts["names_before"]
    assert (out / "cancel.after").read_bytes() == (out / "cancel.before").read_bytes()
    notes = [m[1] for m in facts["messages"] if m[0] == "show_message" and m[1]]
    assert "Cancelled" in notes[-1]
    assert facts["seconds_to_stop"] < 5


def test_cmyk_document_gets_a_clear_message(krita_run: tuple[dict, Path]) -> None:
    facts, _ = _case(krita_run, "cmyk")
    assert not facts["started"] and facts["names_after"] == facts["names_before"]
    errors = [m for m in facts["messages"] if m[0] == "show_message" and m[2] is True]
    assert "CMYK" in errors[-1][1]


def test_upscale_opens_a_new_document(krita_run: tuple[dict, Path], backend: str) -> None:
    facts, out = _case(krita_run, "upscale")
    assert facts["started"] and facts["finished"], facts["messages"]
    assert facts["upscaled"] == [["photo ×2", 48, 32, "U8"]]  # named after the file, photo.kra
    assert facts["names_after"] == facts["names_before"]
    data = (out / "upscale.input").read_bytes()
    buf = PixelBuffer.from_bytes(data, 24, 16, PixelFormat.parse(facts["format"]))
    with Client(backend) as client:
        expected = client.upscale(buf, 2).tobytes()
    assert (out / "upscale.result").read_bytes() == expected


def test_brush_size_is_the_processing_scale(krita_run: tuple[dict, Path], backend: str) -> None:
    facts, out = _case(krita_run, "brush")
    assert facts["started"] and facts["finished"], facts["messages"]
    x, y, w, h = facts["rect"]
    buf = PixelBuffer.from_bytes((out / "brush.input").read_bytes(), w, h, PixelFormat.parse(facts["format"]))
    with Client(backend) as client:
        expected = client.stylize(buf, STYLE, scale=0.5).tobytes()
        plain = client.stylize(buf, STYLE).tobytes()
    assert (out / "brush.result").read_bytes() == expected != plain


def test_apply_on_a_result_stylizes_its_source(krita_run: tuple[dict, Path], backend: str) -> None:
    facts, out = _case(krita_run, "restyle")
    r = facts["restyled"]
    assert facts["started"] and facts["finished"], facts["messages"]
    # The second result sits above the first and is made from "Paint", not from the first result.
    with Client(backend) as client:
        wave_name = next(m.display_name or m.name for m in client.models() if m.name == "wave")
    assert r["order"] == ["Background", "Paint", "Udnie", wave_name], r
    assert r["message"] == f"Added layer “{wave_name}” from “Paint”, which “Udnie” was made from."
    x, y, w, h = facts["rect"]
    buf = PixelBuffer.from_bytes((out / "restyle.input").read_bytes(), w, h, PixelFormat.parse(facts["format"]))
    with Client(backend) as client:
        udnie = client.stylize(buf, STYLE)
        wave = client.stylize(buf, "wave").tobytes()
        stacked = client.stylize(udnie, "wave").tobytes()
    assert (out / "restyle.first").read_bytes() == udnie.tobytes()
    assert (out / "restyle.second").read_bytes() == wave != stacked
    assert r["source_after_reopen"] == "Paint"  # the map is saved in the .kra
    # "Added layer …" is taken down once the layer is gone (as after Undo).
    assert r["message_before_undo"] and r["message_after_undo"] == ""


def test_live_preview_uses_a_reduced_copy_and_leaves_the_document_alone(
    krita_run: tuple[dict, Path], backend: str
) -> None:
    facts, out = _case(krita_run, "preview")
    assert facts["started"], facts["messages"]
    w, h, shrink = facts["thumb"]
    assert [w, h, shrink] == [96, 64, 1.0]  # small enough to preview whole
    shown = [m for m in facts["messages"] if m[0] == "show_preview"]
    assert shown[-1][1] == [w, h] and shown[-1][2].startswith("Udnie, strength 80%")
    thumb = PixelBuffer.from_bytes((out / "preview.thumb").read_bytes(), w, h, PixelFormat.parse("BGRA_U8"))
    with Client(backend) as client:
        expected = client.stylize(thumb, STYLE, strength=0.8).tobytes()
    assert (out / "preview.preview").read_bytes() == expected
    assert facts["names_after"] == facts["names_before"]
    assert (out / "preview.after").read_bytes() == (out / "preview.before").read_bytes()


def test_limits_are_known_before_sending(krita_run: tuple[dict, Path]) -> None:
    facts, _ = _case(krita_run, "limits")
    assert facts["sizes"] == [[4096, 4096], [4096, 4096]]
    (f2, on2, why2), (f4, on4, _), (f8, on8, _) = facts["choices"]
    assert (f2, f4, f8) == (2, 4, 8) and not (on2 or on4 or on8)
    assert "8192×8192" in why2 and "64 MP" in why2 and "--" not in why2
    assert facts["refused"] and facts["names_after"] == facts["names_before"]
    errors = [m[1] for m in facts["messages"] if m[0] == "show_message" and m[2] is True]
    assert errors and "8192×8192" in errors[-1]
    assert "brush size of 52% or more" in facts["problem_at_half_brush"]


def test_gui_the_docker_in_real_krita(tmp_path: Path) -> None:
    """The whole plugin in Krita's GUI under Xvfb (see krita_gui.py), against the backend its Start
    button runs."""
    _require("krita", "xvfb-run")
    sys.path.insert(0, str(HERE))
    try:
        import krita_gui
    finally:
        sys.path.remove(str(HERE))
    wheels = os.environ.get("IMPASTO_WHEELS")
    r = krita_gui.run(tmp_path, Path(wheels) if wheels else None, timeout=300)
    assert r.get("done") and not r.get("errors") and not r.get("fatal") and not r.get("timed_out"), \
        json.dumps(r, indent=1, default=str)  # all of it: pytest would cut a dict short
    assert "quit_blocked_by" not in r, r["quit_blocked_by"]
    assert r["actions"] == {"impasto_apply_style": True, "impasto_apply_last": True}
    # Default shortcuts come from impasto.action, so Krita's shortcut settings can change them.
    assert r["shortcuts"] == {"impasto_apply_style": "Ctrl+Alt+Shift+S",
                              "impasto_apply_last": "Ctrl+Alt+Shift+F"}
    assert r["docker_found"] and r["before_start"] is not True
    # An empty Python field does not open the settings; one typed there counts for Start without Connect,
    # and once the backend answers the settings fold and "Starting the backend…" goes.
    assert r["settings_open_at_start"] is False
    assert r["start_message"] == "Starting the backend…" and r["interpreter_saved"] == sys.executable
    assert r["settings_open_after_connect"] is False and r["message_after_connect"] == ""
    # The live preview: a reduced copy of the 300x200 photo (whole: it is small), in the docker.
    assert r["preview"] == [300, 200]
    # A long job: the bar moves and says how long is left; Cancel leaves the document as it was.
    assert "left" in r["progress_label"] and len(r["progress_values"]) >= 3, r["progress_values"]
    assert r["after_cancel"] == {"names": ["Background"], "message": "Cancelled; the document was not changed."}
    assert r["after_apply"] == ["Background", "Udnie"] and r["message_after_apply"] == "Added layer “Udnie”.", \
        r["apply_timeline"]
    assert r["after_undo"] == ["Background"] and r["message_after_undo"] == ""  # one Undo, message gone
    assert r["after_redo"] == ["Background", "Udnie"]
    # The dialog on the result "Udnie" stylized "Background" again: the same pixels, not a second coat.
    assert r["dialog"] == "Apply Impasto style" and r["restyled_from_source"] is True
    assert sorted(r["final"]) == ["Background", "Udnie", "Udnie 2", "Udnie 3"], r["final"]
    # A 4096x4096 image: no factor fits the backend's 64 MP, each says why, Upscale is off.
    assert r["limits"]["enabled"] == [False, False, False] and not r["limits"]["upscale"]
    assert "8192×8192" in r["limits"]["tooltip"] and "--" not in r["limits"]["tooltip"]
    assert r["upscaled"] == [["chelsea ×2", 600, 400]]  # named after the file
    # The backend dies: red within seconds; Start brings it back green.
    assert r["red_seconds"] <= 4.0
    assert r["krita_exit"] == 0 and r["backend_still_running"] is False
