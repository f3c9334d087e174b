"""Impasto as a built wheel: it carries the plugins (so `impasto plugin install` works without a checkout), and
the docker's "Install backend" (plugins/krita/impasto/backend_setup.py) installs it into a private
environment and starts a backend from there that the plugin's client talks to. All offline: the wheel is
built here with `pip wheel --no-build-isolation --no-index`, pip finds it with `--no-index --find-links`, and
the new environment sees this test environment's torch and friends through a .pth file (a folder of links
to them, without this checkout's own editable impasto), so nothing big is downloaded or copied. pip gets
--no-deps: a Python 3.11 venv comes with setuptools 65, which torch's metadata refuses (>= 77), and
offline pip could not upgrade it."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
from editors import free_port, unavailable
from impasto import __version__
from impasto.cli import plugin_install
from impasto_serve_proc import import_plugin_client

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# What a wheel is built from: setup.py copies plugins/ in, MANIFEST.in keeps it in an sdist.
SOURCE = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "backend", "plugins")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean copy of what a wheel is built from (an in-tree build would leave build/ and egg-info behind,
    and could pick up stale files from an earlier build/)."""
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "_vendor")
    for name in SOURCE:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, src / name)
    return src


@pytest.fixture(scope="module")
def wheel_dir(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """impasto-VERSION-py3-none-any.whl, built offline."""
    out = tmp_path_factory.mktemp("wheels")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-q", str(source), "-w", str(out)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    return out


def _wheel(wheel_dir: Path) -> Path:
    return wheel_dir / f"impasto-{__version__}-py3-none-any.whl"


def test_the_wheel_carries_the_plugins(wheel_dir: Path) -> None:
    names = set(zipfile.ZipFile(_wheel(wheel_dir)).namelist())
    for name in ("krita/impasto.desktop", "krita/impasto.action", "krita/impasto/__init__.py",
                 "krita/impasto/backend_setup.py", "gimp/impasto/impasto.py", "gimp/impasto/impasto_logic.py",
                 "common/impasto_vendor.py", "common/impasto_common.py", "common/impasto_client/_proto/impasto_pb2.py"):
        assert f"impasto/_plugins/{name}" in names, name
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "impasto/cli/plugin_install.py" in names and "impasto/serve/server.py" in names


@pytest.fixture(scope="module")
def deps_view(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of links to this environment's installed packages, less impasto itself: a new environment
    given it in a .pth file sees torch & co. as installed (pip leaves them be) and no impasto."""
    purelib = Path(sysconfig.get_paths()["purelib"])
    view = tmp_path_factory.mktemp("deps")
    for entry in purelib.iterdir():
        if entry.name.lower().startswith(("impasto", "__editable__")) or entry.suffix == ".pth":
            continue
        (view / entry.name).symlink_to(entry)
    return view


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "IMPASTO_PLUGINS_SOURCE"}
    env.pop("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", None)
    return env


def _throwaway_venv(venv: Path, deps_view: Path, *install: str) -> tuple[str, Path]:
    """A venv that sees this environment's packages (less impasto) and has `pip install *install` done by this
    environment's pip (--no-deps: the dependencies are those packages)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(_venv_python(venv))
    purelib = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    (purelib / "deps.pth").write_text(f"{deps_view}\n")  # the CLI imports Pillow & co. to build its parser
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index",
                    "--no-build-isolation", *install], check=True, timeout=300, env=_child_env())
    return python, purelib


def _plugins_source(python: str, cwd: Path) -> Path:
    where = subprocess.run([python, "-c", "from impasto.cli.plugin_install import plugins_source; "
                            "print(plugins_source())"], capture_output=True, text=True, cwd=cwd,
                           env=_child_env(), timeout=120)
    assert where.returncode == 0, where.stderr
    return Path(where.stdout.strip())


def test_editable_install_reads_the_checkouts_plugins(source: Path, deps_view: Path, tmp_path: Path) -> None:
    python, _ = _throwaway_venv(tmp_path / "venv", deps_view, "-e", str(source))
    assert _plugins_source(python, tmp_path) == source / "plugins"
    assert not (source / "backend" / "impasto" / "_plugins").exists()  # no copy left in the checkout


def test_plugin_install_works_from_the_installed_wheel(wheel_dir: Path, deps_view: Path, tmp_path: Path) -> None:
    """No checkout in sight: the plugins come out of the installed package (impasto/_plugins)."""
    python, purelib = _throwaway_venv(tmp_path / "venv", deps_view, str(_wheel(wheel_dir)))
    fake = tmp_path / "wheels"  # stand-in wheels: what matters here is where the plugin files come from
    fake.mkdir()
    for name, version in {pin for pins in plugin_install.PINS.values() for pin in pins.items()}:
        with zipfile.ZipFile(fake / plugin_install.wheel_filename(name, version), "w") as z:
            z.writestr(f"{name}/__init__.py", "")
    assert _plugins_source(python, tmp_path) == purelib / "impasto" / "_plugins"
    for editor, dest, check in (("krita", tmp_path / "pykrita", "impasto/_vendor/impasto_vendor.py"),
                                ("gimp", tmp_path / "plug-ins", "impasto/impasto.py")):
        run = subprocess.run([python, "-m", "impasto", "plugin", "install", editor, "--dest", str(dest), "--wheels",
                              str(fake)], capture_output=True, text=True, cwd=tmp_path, env=_child_env(),
                             timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
        assert (dest / check).is_file()
    assert (tmp_path / "pykrita" / "impasto.desktop").is_file()


def _plugin_module(name: str) -> ModuleType:
    """A standard-library-only module of the Krita plugin, loaded from plugins/krita on its own."""
    path = ROOT / "plugins" / "krita" / "impasto" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"impasto_krita_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_install_start_and_remove_from_the_docker(wheel_dir: Path, deps_view: Path, tmp_path: Path) -> None:
    setup_mod = _plugin_module("backend_setup")
    server_process = _plugin_module("server_process")
    plugin_client = import_plugin_client().ImpastoClient
    setup = setup_mod.BackendSetup(str(tmp_path / "data" / "backend"), python=sys.executable, source=str(wheel_dir),
                                   offline=True, pip_args=["--no-deps"], site_paths=[str(deps_view)])
    assert not setup.installed
    started = time.monotonic()
    setup.install()
    assert setup.wait(240)
    events = setup.poll()
    log = Path(setup.log_path).read_text()
    assert events[-1].kind == setup_mod.DONE, f"{events[-1].text}\n{log[-3000:]}"
    assert setup.installed and Path(setup.log_path) == tmp_path / "data" / "backend-setup.log"
    progress = [e.fraction for e in events if e.kind == setup_mod.PROGRESS]
    assert progress == sorted(progress) and progress[-1] >= 0.95
    assert f"Successfully installed impasto-{__version__}" in log and f"impasto {__version__}" in log
    assert "Collecting" not in log  # nothing was fetched: torch & co. come from the linked folder
    install_seconds = time.monotonic() - started

    # The docker's Start button, with the environment's Python: a backend the plugin's client talks to.
    address = f"127.0.0.1:{free_port()}"
    server = server_process.ServerProcess(log_path=str(tmp_path / "serve.log"))
    server.start(setup.interpreter, address)
    try:
        client = plugin_client(address)
        deadline = time.monotonic() + 120
        while True:
            try:
                info = client.server_info()
                break
            except Exception:
                assert server.running, server.error_output()
                assert time.monotonic() < deadline, "the installed backend did not answer in 120 s"
                time.sleep(0.5)
        assert info.version == __version__
        styles = [m.name for m in client.list_models("style")]
        assert "udnie" in styles
        data, w, h, fmt = client.stylize(bytes(range(256)) * 4, 16, 16, "RGBA_U8", "udnie")
        assert (len(data), w, h, fmt) == (1024, 16, 16, "RGBA_U8")
        # The backend runs from the new environment, not from this checkout.
        where = subprocess.run([setup.interpreter, "-c", "import impasto; print(impasto.__file__)"],
                               capture_output=True, text=True, env=_child_env(), timeout=120)
        assert where.stdout.strip().startswith(str(tmp_path / "data" / "backend"))
    finally:
        server.stop()

    setup.remove()
    assert setup.wait(120)
    assert setup.poll()[-1].kind == setup_mod.DONE
    assert not (tmp_path / "data" / "backend").exists() and not setup.installed
    assert install_seconds < 150, f"the offline install took {install_seconds:.0f} s"


def _python_with_pyqt5() -> str:
    for python in ("/usr/bin/python3", shutil.which("python3") or ""):
        if python and subprocess.run([python, "-c", "import PyQt5.QtWidgets"], capture_output=True,
                                     timeout=60).returncode == 0:
            return python
    unavailable("no Python with PyQt5 (it comes with Krita: apt-get install krita, or .ci/install-krita.sh)")


def test_docker_install_and_remove_buttons(tmp_path: Path) -> None:
    """The panel in the real docker (PyQt5, offscreen): a wrong system Python is a message and an opened log;
    with an environment in place it offers Update and Remove, and Remove deletes it and forgets its Python."""
    env = {**_child_env(), "QT_QPA_PLATFORM": "offscreen", "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_RUNTIME_DIR": str(tmp_path)}
    run = subprocess.run([_python_with_pyqt5(), str(Path(__file__).with_name("backend_panel_driver.py")), str(ROOT),
                          str(tmp_path)], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    r = json.loads(run.stdout.strip().splitlines()[-1])
    assert r["env_dir"] == str(tmp_path / "data" / "impasto" / "backend")
    # the settings start folded (the gallery gets the room; issue 15), the panel works inside them all the same
    assert not r["fields_open"] and (r["button"], r["remove_enabled"]) == ("Install backend", False)
    assert r["busy_button"] == "Cancel"
    bad = str(tmp_path / "no-python")
    assert r["failed"] == [f"{bad} is not a Python 3.11 with venv; the backend needs 3.11.", True]
    assert r["log_shown"] and bad in r["log_text"] and r["after_fail_button"] == "Install backend"
    assert r["saved_setup_python"] == bad and not r["env_exists"]
    assert (r["installed_button"], r["installed_remove_enabled"]) == ("Update backend", True)
    assert r["removed"] == [f"Removed {r['env_dir']}.", False] and not r["env_exists_after_remove"]
    assert r["interpreter_after_remove"] == ["", ""]
    assert (r["final_button"], r["final_remove_enabled"]) == ("Install backend", False)
