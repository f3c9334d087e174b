"""The installed plugins under every Python an editor embeds: Krita 5.2 on Windows and macOS bundles 3.10,
Linux builds and GIMP 3 use the system's (3.11 on Debian 12, 3.13 on Debian 13), Krita 6 a newer one.

For each of 3.10 to 3.13, plugin_python_driver.py runs in that interpreter with only the standard library,
the folders `impasto plugin install krita|gimp` wrote, and the fake Krita API (tests/unit/fake_krita.py):
the Krita controller applies a style and upscales through the vendored client, the GIMP logic builds and
checks requests around it, against a real `impasto serve`, and the pixels must equal the backend's own
answer. Interpreters come from pyenv (~/.pyenv/versions/X.Y.*) or PATH (pythonX.Y); a missing one skips,
and fails under IMPASTO_REQUIRE_EDITORS=1 (CI). The wheels come from $IMPASTO_WHEELS or .cache/plugin-wheels
(.ci/plugin-wheels.sh fills it once), so the test needs no network."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest
from editors import unavailable
from impasto.cli import plugin_install
from impasto.engine.pixels import PixelBuffer, PixelFormat
from impasto.serve.client import Client

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DRIVER = HERE / "plugin_python_driver.py"
STYLE = "udnie"
PYTHONS = plugin_install.PYTHONS  # 3.10 ... 3.13
W, H = 8, 6


@cache
def find_python(version: str) -> str | None:
    """An interpreter for Python `version` ("3.10"): pyenv's newest patch release, else pythonX.Y on PATH."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    candidates = sorted(root.glob(f"{version}.*/bin/python"), key=lambda p: [int(x) for x in
                                                                               p.parts[-3].split(".")
                                                                               if x.isdigit()], reverse=True)
    candidates += [Path(p) for d in os.environ.get("PATH", "").split(os.pathsep) if (p := Path(d) /
                                                                                       f"python{version}").is_file()]
    for python in candidates:
        out = subprocess.run([str(python), "-I", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.strip() == version:
            return str(python)
    return None


def python_or_skip(version: str) -> str:
    python = find_python(version)
    if python is None:
        unavailable(f"no Python {version} here (looked in ~/.pyenv/versions and PATH): `pyenv install {version}`")
    return python


def plugin_wheels() -> Path:
    """The pinned wheels, fetched once by .ci/plugin-wheels.sh; tests never download."""
    folder = Path(os.environ.get("IMPASTO_WHEELS") or ROOT / ".cache" / "plugin-wheels")
    try:
        plugin_install.find_wheels(folder)
    except plugin_install.InstallError as exc:
        unavailable(f"the plugins' wheels are not at hand ({exc}): run .ci/plugin-wheels.sh once (needs PyPI)")
    return folder


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(pykrita folder, GIMP plug-in folder), each installed for every Python the way users install them."""
    wheels = plugin_wheels()
    base = tmp_path_factory.mktemp("plugins")
    krita = plugin_install.install_krita(base / "pykrita", wheels)
    gimp = plugin_install.install_gimp(base / "plug-ins", wheels)
    return krita.plugin_dir.parent, gimp.plugin_dir


def run_driver(python: str, mode: str, spec: dict, tmp_path: Path) -> dict:
    spec_file = tmp_path / f"{mode}.json"
    spec_file.write_text(json.dumps(spec))
    # -I -S: no PYTHONPATH, no site-packages, not even the driver's folder; what an editor's Python has.
    out = subprocess.run([python, "-I", "-S", str(DRIVER), mode, str(spec_file)], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, f"{mode} driver under {python} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def pixels() -> bytes:
    return bytes((i * 37 + 11) % 256 for i in range(W * H * 4))  # as plugin_python_driver.py makes them


@pytest.fixture(scope="module")
def backend_answer(backend: str) -> Callable[..., bytes]:
    """The backend's own answer, through the backend's grpcio client, to compare the plugins' results with."""
    def answer(op: str, data: bytes, width: int, height: int, fmt: str) -> bytes:
        buf = PixelBuffer.from_bytes(data, width, height, PixelFormat.parse(fmt))
        with Client(backend) as client:
            result = client.stylize(buf, STYLE) if op == "stylize" else client.upscale(buf, 2)
        return bytes(result.tobytes())

    return answer


def _folder(version: str) -> str:
    return f"/_vendor/{plugin_install.vendor_folder(version)}/"


@pytest.mark.parametrize("version", PYTHONS)
def test_krita_controller_under_python(version: str, installed: tuple[Path, Path], backend: str,
                                       unused_address: str, backend_answer: Callable[..., bytes],
                                       tmp_path: Path) -> None:
    python = python_or_skip(version)
    spec = {"pykrita": str(installed[0]), "fakes": str(ROOT / "tests" / "unit"), "address": backend,
            "down": unused_address, "style": STYLE}
    seen = run_driver(python, "krita", spec, tmp_path)
    assert seen["python"].startswith(version + ".")
    assert seen["plugin"].startswith(str(installed[0]))
    assert seen["connected"] is True, seen["errors_on_connect"]
    # The client and this Python's pins came from the installed folder, not from anywhere else.
    assert seen["client"].startswith(str(installed[0] / "impasto" / "_vendor" / "impasto_client"))
    assert _folder(version) in seen["multidict"]
    assert STYLE in seen["styles"] and seen["applied"] and seen["upscaled"], seen["errors"]
    assert not seen["errors"]
    assert len(seen["layers"]) == 3  # Background, Paint, the result
    stylized = bytes.fromhex(seen["stylized"])
    assert stylized == backend_answer("stylize", pixels(), W, H, "BGRA_U8")
    # The fake document's projection is its top layer: the stylized one.
    assert seen["upscaled_size"] == [2 * W, 2 * H]
    assert bytes.fromhex(seen["upscaled"]) == backend_answer("upscale", stylized, W, H, "BGRA_U8")
    # A backend that is not running: said in the docker, the document untouched.
    assert seen["down_connected"] is False and seen["down_layers"] == ["Background", "Paint"]
    assert any("not running" in e for e in seen["down_errors"]), seen["down_errors"]


@pytest.mark.parametrize("version", PYTHONS)
def test_gimp_logic_under_python(version: str, installed: tuple[Path, Path], backend: str, unused_address: str,
                                 backend_answer: Callable[..., bytes], tmp_path: Path) -> None:
    python = python_or_skip(version)
    spec = {"plugin": str(installed[1]), "address": backend, "down": unused_address, "style": STYLE}
    seen = run_driver(python, "gimp", spec, tmp_path)
    assert seen["problem"] == "" and "client_error" not in seen, seen
    assert seen["client"].startswith(str(installed[1] / "_vendor" / "impasto_client"))
    assert _folder(version) in seen["protobuf"]
    assert bytes.fromhex(seen["upscaled"]) == backend_answer("upscale", pixels(), W, H, "RGBA_U8")
    assert seen["upscale_progress"] == pytest.approx(1.0)
    assert bytes.fromhex(seen["stylized"]) == backend_answer("stylize", pixels(), W, H, "RGBA_U8")
    assert "impasto serve" in seen["down_message"]


def test_plugin_installed_for_another_python_says_how_to_reinstall(backend: str, unused_address: str,
                                                                   tmp_path: Path) -> None:
    """Krita 5.2's 3.10 with a plugin installed for 3.11 only: a message in the docker, not a traceback."""
    python = python_or_skip("3.10")
    krita = plugin_install.install_krita(tmp_path / "pykrita", plugin_wheels(), python="3.11")
    spec = {"pykrita": str(krita.plugin_dir.parent), "fakes": str(ROOT / "tests" / "unit"), "address": backend,
            "down": unused_address, "style": STYLE}
    seen = run_driver(python, "krita", spec, tmp_path)
    assert seen["connected"] is not True
    assert any("installed for Python 3.11, but this one is 3.10" in e and "--python-version 3.10" in e
               for e in seen["errors_on_connect"]), seen["errors_on_connect"]


def test_too_old_python_is_told_so(installed: tuple[Path, Path], backend: str, unused_address: str,
                                   tmp_path: Path) -> None:
    """Python 3.9 (older Krita builds): the client refuses with a message; nothing raises in the plugin.
    Not required in CI: no editor the plugins support bundles it."""
    python = find_python("3.9")
    if python is None:
        pytest.skip("no Python 3.9 here")
    spec = {"plugin": str(installed[1]), "address": backend, "down": unused_address, "style": STYLE}
    seen = run_driver(python, "gimp", spec, tmp_path)
    assert "needs Python 3.10 or newer, and this one is 3.9" in seen["problem"]
    assert seen["client_error"].startswith("ClientUnavailable: Impasto's plugin needs Python 3.10")
    spec = {"pykrita": str(installed[0]), "fakes": str(ROOT / "tests" / "unit"), "address": backend,
            "down": unused_address, "style": STYLE}
    seen = run_driver(python, "krita", spec, tmp_path)
    assert seen["connected"] is not True
    assert any("needs Python 3.10 or newer" in e for e in seen["errors_on_connect"]), seen["errors_on_connect"]
