"""The GIMP 3 plug-in in real GIMP (gimp-console-3.0, batch mode) against a real backend on loopback.

GIMP 3 lives in a Debian 13 chroot made by .ci/install-gimp.sh at $IMPASTO_GIMP_ROOT (IMPASTO_GIMP_ROOT=/
for a Debian 13 host with GIMP 3 installed). The plug-in is installed with `impasto plugin install gimp`
into a work folder inside the chroot, gimp_driver.py builds images there and calls our procedures through
the PDB, and these tests compare what it saw with the backend's own answer through impasto.serve.client.Client.
Two GIMP runs in all (backend up, backend down), a few seconds each, so everything shares module fixtures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from editors import unavailable

pytestmark = [pytest.mark.gimp, pytest.mark.slow]

ROOT = Path(os.environ.get("IMPASTO_GIMP_ROOT", "/var/cache/impasto/gimp-root"))
DRIVER = Path(__file__).with_name("gimp_driver.py")
SYSTEM_PLUGINS = "/usr/lib/x86_64-linux-gnu/gimp/3.0/plug-ins"
GIMP_TIMEOUT = 180
U8, U16, F32_LINEAR = "R'G'B'A u8", "R'G'B'A u16", "RGBA float"


def _why_no_gimp() -> str | None:
    """Why real GIMP 3 cannot run here, or None."""
    if str(ROOT) == "/":
        return None if shutil.which("gimp-console-3.0") else "gimp-console-3.0 is not on PATH"
    if not (ROOT / "usr/bin/gimp-console-3.0").exists():
        return f"no GIMP 3 chroot at {ROOT} (build it with .ci/install-gimp.sh, or set IMPASTO_GIMP_ROOT)"
    if os.geteuid() != 0:
        return "running GIMP 3 in its chroot needs root"
    if not os.path.ismount(ROOT / "proc"):
        return f"{ROOT}/proc is not mounted (run .ci/install-gimp.sh again after a reboot)"
    return None


@pytest.fixture(scope="module")
def gimp() -> None:
    reason = _why_no_gimp()
    if reason:
        unavailable(f"real GIMP 3 unavailable: {reason}")


@pytest.fixture(scope="module")
def work(gimp: None) -> Iterator[Path]:
    """A folder inside the chroot with the plug-in installed the way users install it."""
    base = ROOT / "tmp"
    folder = Path(tempfile.mkdtemp(prefix="impasto-gimp-test-", dir=base))
    try:
        plugins = folder / "plug-ins"
        install = [sys.executable, "-m", "impasto", "plugin", "install", "gimp", "--dest", str(plugins)]
        run = subprocess.run(install, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, f"impasto plugin install gimp failed:\n{run.stdout}\n{run.stderr}"
        script = plugins / "impasto" / "impasto.py"
        assert script.is_file() and os.access(script, os.X_OK), f"{script} missing or not executable"
        (folder / "home").mkdir()
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _inside(path: Path) -> str:
    """A path as GIMP sees it from inside the chroot."""
    return "/" + str(path.relative_to(ROOT)) if str(ROOT) != "/" else str(path)


def _run_gimp(work: Path, name: str, cases: list[dict], address: str) -> dict:
    folder = work / name
    folder.mkdir()
    for case in cases:
        for layer in case["layers"]:
            (folder / layer["pixels"]).write_bytes(layer.pop("data"))
    (folder / "cases.json").write_text(json.dumps(cases))
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
        "HOME": _inside(work / "home"),  # a fresh GIMP profile: no user settings, no stale pluginrc
        "GIMP_TESTING_PLUGINDIRS": f"{SYSTEM_PLUGINS}:{_inside(work / 'plug-ins')}",
        "IMPASTO_GIMP_WORK": _inside(folder), "IMPASTO_ADDRESS": address,
        # The plug-in's test hook: each status-bar call it makes, with GIMP's answer, one JSON line each.
        "IMPASTO_GIMP_PROGRESS_LOG": _inside(folder / "progress.jsonl"),
    }
    command = ["gimp-console-3.0", "-nis", "--batch-interpreter", "python-fu-eval", "-b", "-", "--quit"]
    if str(ROOT) != "/":
        command = ["chroot", str(ROOT), "env", "-i", *(f"{k}={v}" for k, v in env.items()), *command]
    with DRIVER.open("rb") as script:
        run = subprocess.run(command, stdin=script, capture_output=True, timeout=GIMP_TIMEOUT,
                             env={**os.environ, **env} if str(ROOT) == "/" else None)
    log = (run.stdout + run.stderr).decode(errors="replace")
    results_file = folder / "results.json"
    assert results_file.exists(), f"GIMP wrote no results (exit {run.returncode}):\n{log[-4000:]}"
    results = json.loads(results_file.read_text())
    for case_name, result in results.items():
        assert "error" not in result, f"{case_name}: {result['error']}\nGIMP log:\n{log[-4000:]}"
    results["_folder"] = str(folder)
    results["_progress"] = _progress_by_case(folder / "progress.jsonl")
    return results


def _progress_by_case(log: Path) -> dict[str, list[list]]:
    """The plug-in's status-bar calls, by case (the driver writes ["case", NAME] before each)."""
    by_case: dict[str, list[list]] = {}
    current: list[list] = []
    for line in log.read_text(encoding="utf-8").splitlines() if log.exists() else []:
        entry = json.loads(line)
        if entry[0] == "case":
            current = by_case.setdefault(entry[1], [])
        else:
            current.append(entry)
    return by_case


def _pixels(rng: np.random.Generator, w: int, h: int, dtype: type, channels: int = 4) -> np.ndarray:
    top = np.iinfo(dtype).max
    return rng.integers(0, top, size=(h, w, channels), dtype=dtype, endpoint=True)


def _layer(name: str, array: np.ndarray, offsets: tuple[int, int] = (0, 0)) -> dict:
    h, w = array.shape[:2]
    data = array.astype(array.dtype.newbyteorder("<")).tobytes()
    alpha = array.shape[2] == 4
    return {"name": name, "size": [w, h], "offsets": list(offsets), "data": data, "alpha": alpha}


def _case(name: str, precision: str, size: tuple[int, int], layers: list[dict], procedure: str, args: dict,
          babl: str, active: str = "bg", selection: list[int] | None = None, base: str = "rgb",
          file: str | None = None) -> dict:
    for layer in layers:  # one folder holds every case's inputs
        layer["pixels"] = f"{name}-{layer['name']}.bin"
    return {"name": name, "precision": precision, "image": list(size), "layers": layers, "active": active,
            "selection": selection, "procedure": procedure, "args": args, "read": ["bg"], "babl": babl,
            "base": base, "file": file}


# The inputs, made once: the module fixtures below run GIMP on all of them together.
_rng = np.random.default_rng(5)
INPUTS = {
    "u8": _pixels(_rng, 12, 8, np.uint8),
    "u16": _pixels(_rng, 10, 6, np.uint16),
    "new": _pixels(_rng, 9, 7, np.uint8),
    "f32": _rng.random((6, 5, 4), dtype=np.float32),
    "sel": _pixels(_rng, 16, 12, np.uint8),
    "rgb16": _pixels(_rng, 7, 5, np.uint16, channels=3),
    "half": _rng.random((4, 5, 4), dtype=np.float32).astype(np.float16),
    "gray": _pixels(_rng, 6, 5, np.uint8),
    "style_bg": _pixels(_rng, 100, 80, np.uint8),
    "style_top": _pixels(_rng, 20, 20, np.uint8),
    "brush": _pixels(_rng, 64, 48, np.uint8),
    "limit": _pixels(_rng, 20, 16, np.uint8),
    "huge": _pixels(_rng, 60, 50, np.uint8),
}
PHOTO = "/tmp/photos/chelsea.xcf"  # where the "new" case's image seems to come from (an XCF: set_file wants one)
# Stylize: a 100x80 layer at (5, 7) under another layer, a selection at (40, 30) 20x16 in the image:
# in layer coordinates (35, 23), plus the 32 px margin clipped to the layer: (3, 0) 84x71.
SELECTION = [40, 30, 20, 16]
# Upscale: a 16x12 layer at (2, 3) in a 20x16 image, a selection at (6, 5) 6x5: in layer coordinates
# (4, 2), x2 -> (8, 4) 12x10 in the upscaled layer, which sits at (4, 6).
UPSCALE_SELECTION = [6, 5, 6, 5]
STYLE_REGION = (3, 0, 84, 71)


def _up_cases() -> list[dict]:
    upscale = "impasto-upscale"
    stylize_layers = [_layer("top", INPUTS["style_top"]), _layer("bg", INPUTS["style_bg"], (5, 7))]
    return [
        _case("u8", "u8-non-linear", (12, 8), [_layer("bg", INPUTS["u8"])], upscale, {"factor": "x4"}, U8),
        _case("u16", "u16-non-linear", (10, 6), [_layer("bg", INPUTS["u16"])], upscale, {"factor": "x4"},
              U16),
        _case("new", "u8-non-linear", (9, 7), [_layer("bg", INPUTS["new"])], upscale,
              {"factor": "x2", "new-image": True}, U8, file=PHOTO),
        _case("f32", "float-linear", (5, 6), [_layer("bg", INPUTS["f32"])], upscale, {"factor": "x2"},
              F32_LINEAR),
        _case("sel", "u8-non-linear", (20, 16), [_layer("bg", INPUTS["sel"], (2, 3))], upscale,
              {"factor": "x2"}, U8, selection=UPSCALE_SELECTION),
        _case("rgb16", "u16-non-linear", (7, 5), [_layer("bg", INPUTS["rgb16"])], upscale, {"factor": "x2"},
              "R'G'B' u16"),
        _case("half", "half-linear", (5, 4), [_layer("bg", INPUTS["half"])], upscale, {"factor": "x2"},
              "RGBA half"),
        _case("gray", "u8-non-linear", (6, 5), [_layer("bg", INPUTS["gray"])], upscale, {"factor": "x2"}, U8,
              base="gray"),
        _case("stylize", "u8-non-linear", (120, 100), stylize_layers, "impasto-stylize",
              {"style": "udnie", "strength": 1.0}, U8, selection=SELECTION),
        _case("brush", "u8-non-linear", (64, 48), [_layer("bg", INPUTS["brush"])], "impasto-stylize",
              {"style": "wave", "brush-size": 2.0}, U8),
    ]


# The limits run: a backend that takes at most LIMIT pixels. A 20x16 image fits x2 (1,280) but not x4
# (5,120); a 60x50 one fits no factor (x2: 12,000), and at brush size 0.5 it would be stylized at 120x100.
LIMIT = 5000


def _limit_cases() -> list[dict]:
    upscale, stylize = "impasto-upscale", "impasto-stylize"
    one = [("limit", (20, 16)), ("huge", (60, 50))]
    layer = {name: [_layer("bg", INPUTS[name])] for name, _ in one}
    size = dict(one)
    return [
        _case("limit-x4", "u8-non-linear", size["limit"], layer["limit"], upscale, {"factor": "x4"}, U8),
        _case("limit-x2", "u8-non-linear", size["limit"], [_layer("bg", INPUTS["limit"])], upscale,
              {"factor": "x2", "model": "bicubic"}, U8),
        _case("limit-model", "u8-non-linear", (4, 3), [_layer("bg", INPUTS["limit"][:3, :4].copy())], upscale,
              {"factor": "x4", "model": "srgan-x2"}, U8),
        _case("limit-none", "u8-non-linear", size["huge"], layer["huge"], upscale, {"factor": "x2"}, U8),
        _case("limit-brush", "u8-non-linear", size["huge"], [_layer("bg", INPUTS["huge"])], stylize,
              {"style": "udnie", "brush-size": 0.5}, U8),
        _case("limit-style", "u8-non-linear", (4, 3), [_layer("bg", INPUTS["limit"][:3, :4].copy())], stylize,
              {"style": "no-such-style"}, U8),
    ]


def _down_cases() -> list[dict]:
    cases = _up_cases()
    for case in cases:
        case["name"] = "down-" + case["name"]
        for layer in case["layers"]:
            layer["pixels"] = "down-" + layer["pixels"]
    return [cases[0], next(case for case in cases if case["name"] == "down-stylize")]


@pytest.fixture(scope="module")
def up(work: Path, backend: str) -> dict:
    return _run_gimp(work, "up", _up_cases(), backend)


@pytest.fixture(scope="module")
def down(work: Path, unused_address: str) -> tuple[dict, str]:
    return _run_gimp(work, "down", _down_cases(), unused_address), unused_address


@pytest.fixture(scope="module")
def limited(work: Path) -> dict:
    from impasto_serve_proc import ServeProcess

    with ServeProcess("--max-pixels", str(LIMIT)) as server:
        return _run_gimp(work, "limits", _limit_cases(), server.address)


@pytest.fixture(scope="module")
def client(backend: str) -> Iterator[Any]:
    from impasto.serve.client import Client

    with Client(backend) as c:
        yield c


def _read(results: dict, file: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    data = (Path(results["_folder"]) / file).read_bytes()
    return np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)


def _layer_info(image: dict, name: str) -> dict:
    return next(layer for layer in image["layers"] if layer["name"] == name)


@pytest.mark.parametrize(("case", "dtype"), [("u8", np.uint8), ("u16", np.uint16)])
def test_upscale_x4_equals_the_backend(up: dict, client: Any, case: str, dtype: type) -> None:
    result = up[case]
    assert result["status"] == "success", result["message"]
    assert result["same_image"]
    source = INPUTS[case]
    h, w = source.shape[:2]
    assert result["image"]["size"] == [w * 4, h * 4]
    assert result["image"]["precision"] == ("u8" if dtype is np.uint8 else "u16") + "-non-linear"
    layer = _layer_info(result["image"], "bg")
    assert layer["size"] == [w * 4, h * 4]
    got = _read(up, layer["pixels"], (h * 4, w * 4, 4), dtype)
    direct = client.upscale(source, 4)
    expected = np.asarray(direct)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_upscale_into_a_new_image_leaves_the_original(up: dict, client: Any) -> None:
    result = up["new"]
    assert result["status"] == "success", result["message"]
    assert not result["same_image"]
    assert result["image"]["size"] == [9, 7]
    original = _read(up, _layer_info(result["image"], "bg")["pixels"], (7, 9, 4), np.uint8)
    np.testing.assert_array_equal(original, INPUTS["new"])
    assert result["image"]["file"] == PHOTO
    # Named as Krita names its upscaled document: the file's name and the factor.
    assert result["result_image"]["file"] == "/tmp/photos/chelsea ×2.xcf"
    assert result["result_image"]["size"] == [18, 14]
    got = _read(up, _layer_info(result["result_image"], "bg")["pixels"], (14, 18, 4), np.uint8)
    np.testing.assert_array_equal(got, np.asarray(client.upscale(INPUTS["new"], 2)))


def test_stylize_adds_a_masked_layer_above_the_active_one(up: dict, client: Any) -> None:
    result = up["stylize"]
    assert result["status"] == "success", result["message"]
    layers = result["image"]["layers"]
    # Named as Krita names it: the style's display name.
    assert [layer["name"] for layer in layers] == ["top", "Udnie", "bg"]
    new = layers[1]
    x, y, w, h = STYLE_REGION
    assert new["offsets"] == [5 + x, 7 + y] and new["size"] == [w, h]
    assert new["mask"]
    mask = _read(up, new["mask_pixels"], (h, w), np.uint8)
    sx, sy, sw, sh = SELECTION[0] - new["offsets"][0], SELECTION[1] - new["offsets"][1], *SELECTION[2:]
    expected_mask = np.zeros((h, w), np.uint8)
    expected_mask[sy:sy + sh, sx:sx + sw] = 255
    np.testing.assert_array_equal(mask, expected_mask)
    got = _read(up, new["pixels"], (h, w, 4), np.uint8)
    source = np.ascontiguousarray(INPUTS["style_bg"][y:y + h, x:x + w])
    np.testing.assert_array_equal(got, np.asarray(client.stylize(source, "udnie")))
    # The source layer itself is untouched.
    bg = _read(up, _layer_info(result["image"], "bg")["pixels"], (80, 100, 4), np.uint8)
    np.testing.assert_array_equal(bg, INPUTS["style_bg"])


@pytest.mark.parametrize(("case", "source", "size"), [("down-u8", "u8", [12, 8]),
                                                      ("down-stylize", "style_bg", [120, 100])])
def test_backend_down_names_impasto_serve_and_leaves_the_image(down: tuple[dict, str], case: str, source: str,
                                                               size: list[int]) -> None:
    results, address = down
    result = results[case]
    assert result["status"] == "execution-error"
    assert "impasto serve" in result["message"] and address in result["message"]
    image = result["image"]
    assert image["size"] == size
    assert [layer["name"] for layer in image["layers"]] == (["bg"] if source == "u8" else ["top", "bg"])
    bg = _layer_info(image, "bg")
    h, w = INPUTS[source].shape[:2]
    np.testing.assert_array_equal(_read(results, bg["pixels"], (h, w, 4), np.uint8), INPUTS[source])


@pytest.mark.parametrize(("case", "linear"), [("f32", True), ("half", True), ("rgb16", False)])
def test_upscale_float_and_no_alpha_equal_the_backend(up: dict, client: Any, case: str, linear: bool) -> None:
    from impasto.engine.pixels import PixelBuffer

    result = up[case]
    assert result["status"] == "success", result["message"]
    source = INPUTS[case]
    h, w, c = source.shape
    layer = _layer_info(result["image"], "bg")
    assert layer["size"] == [w * 2, h * 2]
    got = _read(up, layer["pixels"], (h * 2, w * 2, c), source.dtype.type)
    direct = client.upscale(PixelBuffer.from_array(source, linear=linear), 2)
    np.testing.assert_array_equal(got, direct.array)


def test_upscale_a_grey_image(up: dict) -> None:
    result = up["gray"]
    assert result["status"] == "success", result["message"]
    assert result["image"]["size"] == [12, 10]
    got = _read(up, _layer_info(result["image"], "bg")["pixels"], (10, 12, 4), np.uint8)
    # Read back as RGB from a grey layer: the three channels agree.
    assert (got[..., 0] == got[..., 1]).all() and (got[..., 1] == got[..., 2]).all()


def test_upscale_keeps_offsets_and_fills_only_the_selection(up: dict, client: Any) -> None:
    result = up["sel"]
    assert result["status"] == "success", result["message"]
    assert result["image"]["size"] == [40, 32]
    layer = _layer_info(result["image"], "bg")
    assert layer["offsets"] == [4, 6] and layer["size"] == [32, 24]
    got = _read(up, layer["pixels"], (24, 32, 4), np.uint8)
    network = np.asarray(client.upscale(INPUTS["sel"], 2))
    # Inside the (scaled) selection, less its soft 1 px edge: the network's output.
    np.testing.assert_array_equal(got[5:13, 9:19], network[5:13, 9:19])
    # Outside it: GIMP's own scaling, which is not what the network made of this noise.
    assert not np.array_equal(got[:3], network[:3])


def test_brush_size_changes_the_strokes(up: dict, client: Any) -> None:
    result = up["brush"]
    assert result["status"] == "success", result["message"]
    assert [layer["name"] for layer in result["image"]["layers"]] == ["The Great Wave", "bg"]
    got = _read(up, result["image"]["layers"][0]["pixels"], (48, 64, 4), np.uint8)
    # Brush size 2: the backend processes the layer at half size.
    np.testing.assert_array_equal(got, np.asarray(client.stylize(INPUTS["brush"], "wave", scale=0.5)))
    assert not np.array_equal(got, np.asarray(client.stylize(INPUTS["brush"], "wave")))


def _refused(results: dict, case: str, size: list[int], source: str) -> str:
    """The message of a run refused before anything was sent; checks the image is as it was."""
    result = results[case]
    assert result["status"] == "execution-error", result
    assert results["_progress"][case] == []  # no progress began: nothing was read or sent
    image = result["image"]
    assert image["size"] == size and [layer["name"] for layer in image["layers"]] == ["bg"]
    h, w = size[1], size[0]
    got = _read(results, image["layers"][0]["pixels"], (h, w, 4), np.uint8)
    np.testing.assert_array_equal(got, INPUTS[source][:h, :w])
    message = result["message"]
    assert message.startswith("Impasto: ") and "--max-pixels" not in message, message
    return message


def test_a_factor_over_the_backends_limit_is_refused_before_sending(limited: dict) -> None:
    message = _refused(limited, "limit-x4", [20, 16], "limit")
    assert message == ("Impasto: ×4 would make 80×64 (5,120 pixels); the backend makes at most 5,000 pixels: "
                       "choose ×2, "
                       "or select a smaller part of the image")
    # ×2 fits the same backend.
    assert limited["limit-x2"]["status"] == "success", limited["limit-x2"]["message"]
    assert limited["limit-x2"]["image"]["size"] == [40, 32]


def test_a_model_of_another_factor_is_refused_before_sending(limited: dict) -> None:
    message = _refused(limited, "limit-model", [4, 3], "limit")
    assert message == "Impasto: model 'srgan-x2' upscales ×2, not ×4: choose ×2, or another model"


def test_an_image_no_factor_fits_is_refused_with_what_to_do(limited: dict) -> None:
    message = _refused(limited, "limit-none", [60, 50], "huge")
    assert message.startswith("Impasto: this image is too large for the backend to upscale: ×2 would make 120×100")
    assert "Select a smaller part of the image" in message


def test_a_brush_too_small_for_the_limit_is_refused_with_the_smallest_that_fits(limited: dict) -> None:
    message = _refused(limited, "limit-brush", [60, 50], "huge")
    assert message == ("Impasto: at brush size 0.5 the layer is painted at 120×100 (12,000 pixels), over the "
                       "backend's 5,000 pixels: use a brush size of 0.78 or more")


def test_an_unknown_style_is_refused_with_the_backends_styles(limited: dict) -> None:
    result = limited["limit-style"]
    assert result["status"] == "calling-error"
    assert "no style 'no-such-style'; it has" in result["message"] and "udnie" in result["message"]
    assert limited["_progress"]["limit-style"] == []


@pytest.mark.parametrize(("case", "title"), [("stylize", "Impasto style: Udnie"),
                                             ("u8", "Upscaling ×4 with Impasto")])
def test_progress_reaches_gimps_status_bar(up: dict, case: str, title: str) -> None:
    calls = up["_progress"][case]
    assert calls[0] == ["init", title, True]
    assert calls[-1] == ["end", True]  # before the image changes: no Cancel can cut a write short
    assert all(call[-1] is True for call in calls), calls  # GIMP took every call
    fractions = [call[1] for call in calls if call[0] == "update"]
    assert fractions and fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    texts = [call[1] for call in calls if call[0] == "set_text"]
    assert texts and texts[-1].endswith("100%"), texts


@pytest.fixture(scope="module")
def gui(gimp: None) -> dict:
    import gimp_gui

    reason = gimp_gui.why_not()
    if reason:  # a tool for the GUI run is missing (.ci/install-gimp.sh installs them): skip, or fail in CI
        unavailable(f"GIMP's GUI run unavailable: {reason}")
    return gimp_gui.session()


def test_gui_dialogs_progress_and_cancel(gui: dict) -> None:
    """Real GIMP with its GUI under Xvfb (tests/integration/gimp_gui.py, which also writes the docs'
    screenshots): the dialogs open from the menus' actions, OK in the style dialog adds a layer while the
    status bar's progress bar fills, and Cancel in the status bar leaves the layers as they were and stops
    the backend's job early."""
    assert gui["progress_moved"], gui["progress_fills"]
    assert gui["layer_added"]
    assert gui["cancel_at"] and gui["cancel_left_layers"]
    assert gui["backend_dropped_job"], gui["job_seconds"]
