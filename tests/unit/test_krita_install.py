"""`impasto plugin install krita|gimp` and `impasto plugin build krita`, with stand-in wheels."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from impasto.cli import main, plugin_install
from plugin_loader import common_on_path

KRITA_IMPORTER = Path("/usr/share/krita/pykrita/plugin_importer/plugin_importer.py")


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    """One tiny py3-none-any wheel per pinned package and version: a module and its dist-info."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    for name, version in {pin for pins in plugin_install.PINS.values() for pin in pins.items()}:
        with zipfile.ZipFile(folder / plugin_install.wheel_filename(name, version), "w") as z:
            top = "google/protobuf" if name == "protobuf" else name
            z.writestr(f"{top}/__init__.py", f"VERSION = {version!r}\n")
            z.writestr(f"{name}-{version}.dist-info/METADATA", f"Name: {name}\nVersion: {version}\n")
    return folder


def test_plugin_manager_gets_a_manual(tmp_path: Path, wheels: Path) -> None:
    """Krita's Python Plugin Manager shows the file the .desktop names (X-Krita-Manual), read from the
    installed package folder, instead of "No Manual Available"."""
    dest = tmp_path / "krita" / "pykrita"
    plugin_install.install_krita(dest, wheels)
    entries = dict(line.split("=", 1) for line in (dest / "impasto.desktop").read_text().splitlines()
                   if "=" in line)
    manual = dest / "impasto" / entries["X-Krita-Manual"]
    text = manual.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "Brush size" in text and "Live preview" in text


def test_install_krita_lays_out_plugin_vendor_and_action(tmp_path: Path, wheels: Path) -> None:
    dest = tmp_path / "krita" / "pykrita"
    done = plugin_install.install_krita(dest, wheels)
    assert done.plugin_dir == dest / "impasto" and done.pythons == plugin_install.PYTHONS
    assert (dest / "impasto.desktop").is_file() and (dest / "impasto" / "__init__.py").is_file()
    assert (tmp_path / "krita" / "actions" / "impasto.action").is_file()
    vendor = dest / "impasto" / "_vendor"
    # One folder of wheels per Python, each with that Python's pins.
    assert sorted(p.name for p in vendor.glob("py3*")) == ["py310", "py311", "py312", "py313"]
    for python in plugin_install.PYTHONS:
        for top in ("grpclib", "h2", "hpack", "hyperframe", "multidict", "google/protobuf"):
            assert (vendor / plugin_install.vendor_folder(python) / top / "__init__.py").is_file(), (python, top)
    assert "7.1.0" in (vendor / "py310" / "multidict" / "__init__.py").read_text()
    assert (vendor / "py310" / "typing_extensions").is_dir() and not (vendor / "py311" / "typing_extensions").exists()
    assert "7.2.1" in (vendor / "py313" / "multidict" / "__init__.py").read_text()
    for name in ("impasto_client", "impasto_common.py", "impasto_vendor.py"):
        assert (vendor / name).exists(), name
    assert (vendor / "impasto_client" / "_proto" / "impasto_pb2.py").is_file()
    assert not list(dest.rglob("__pycache__"))
    # Installing again replaces the old copy instead of mixing with it.
    (dest / "impasto" / "stale.py").write_text("")
    plugin_install.install_krita(dest, wheels)
    assert not (dest / "impasto" / "stale.py").exists()


def test_one_python_gets_only_its_wheels(tmp_path: Path, wheels: Path) -> None:
    for python in ("3.10", "3.12"):
        done = plugin_install.install_krita(tmp_path / python, wheels, python=python)
        assert done.pythons == (python,)
        vendor = done.plugin_dir / "_vendor"
        assert [p.name for p in vendor.glob("py3*")] == [plugin_install.vendor_folder(python)]
    with pytest.raises(plugin_install.InstallError, match="3.10 to 3.13, not '3.9'"):
        plugin_install.install_krita(tmp_path / "old", wheels, python="3.9")


def _run_isolated(code: str, path: list[Path], cwd: Path) -> list[str]:
    """`code` in a Python that sees only `path` and the standard library (-S: no site-packages, so neither
    the backend nor plugins/common of this checkout), as an editor's bundled Python would."""
    env = {"PYTHONPATH": os.pathsep.join(map(str, path))}
    out = subprocess.run([sys.executable, "-S", "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_installed_plugins_import_the_common_module_they_carry(tmp_path: Path, wheels: Path) -> None:
    krita = plugin_install.install_krita(tmp_path / "pykrita", wheels)
    # The plugin package puts its _vendor, and the wheels folder for this Python, on sys.path; the modules
    # that need no Qt or Krita then load.
    seen = _run_isolated("import impasto, impasto.formats, impasto.settings, impasto.jobs, impasto.controller, "
                         "impasto_common, multidict; print(impasto_common.__file__, impasto.formats.Rect.__module__,"
                         " multidict.__file__)", [krita.plugin_dir.parent], tmp_path)
    here = plugin_install.vendor_folder(f"{sys.version_info[0]}.{sys.version_info[1]}")
    assert seen == [str(krita.plugin_dir / "_vendor" / "impasto_common.py"), "impasto_common",
                    str(krita.plugin_dir / "_vendor" / here / "multidict" / "__init__.py")]
    gimp = plugin_install.install_gimp(tmp_path / "plug-ins", wheels)
    # impasto.py puts its own folder and _vendor on sys.path before importing impasto_logic.
    seen = _run_isolated("import impasto_logic, impasto_common; print(impasto_common.__file__, "
                         "impasto_logic.Rect is impasto_common.Rect)",
                         [gimp.plugin_dir, gimp.plugin_dir / "_vendor"], tmp_path)
    assert seen == [str(gimp.plugin_dir / "_vendor" / "impasto_common.py"), "True"]


def test_missing_wheels_are_named(tmp_path: Path, wheels: Path) -> None:
    (wheels / plugin_install.wheel_filename("typing_extensions", plugin_install.PINS["3.10"]["typing_extensions"])
     ).unlink()
    with pytest.raises(plugin_install.InstallError, match="typing_extensions-"):
        plugin_install.install_krita(tmp_path / "pykrita", wheels)
    # A Python that does not need it installs without it.
    plugin_install.install_krita(tmp_path / "pykrita", wheels, python="3.11")


def test_downloads_only_what_the_cache_lacks_for_the_oldest_python_needing_it(tmp_path: Path, wheels: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / plugin_install.wheel_filename("h2", "4.4.1")).write_bytes(
        (wheels / plugin_install.wheel_filename("h2", "4.4.1")).read_bytes())
    fetched: dict[tuple[str, str], str] = {}

    def download(name: str, version: str, python: str, into: Path) -> None:
        fetched[name, version] = python
        target = plugin_install.wheel_filename(name, version)
        (into / target).write_bytes((wheels / target).read_bytes())

    found = plugin_install.find_wheels(None, cache, download)
    assert list(found) == list(plugin_install.PYTHONS)
    assert all(len(found[p]) == len(plugin_install.PINS[p]) for p in found)
    assert ("h2", "4.4.1") not in fetched
    # pip checks each wheel's Requires-Python against the Python it is fetched for.
    assert fetched["multidict", "7.1.0"] == "3.10" and fetched["multidict", "7.2.1"] == "3.11"
    assert fetched["typing_extensions", plugin_install.PINS["3.10"]["typing_extensions"]] == "3.10"
    assert fetched["grpclib", "0.4.9"] == "3.10"


def test_install_gimp_keeps_the_script_executable(tmp_path: Path, wheels: Path) -> None:
    source = plugin_install.plugins_source() / "gimp" / "impasto" / "impasto.py"
    if not source.is_file():
        pytest.skip("plugins/gimp is not in this checkout yet")
    done = plugin_install.install_gimp(tmp_path / "plug-ins", wheels)
    script = done.plugin_dir / "impasto.py"
    assert done.plugin_dir == tmp_path / "plug-ins" / "impasto"
    assert script.stat().st_mode & stat.S_IXUSR
    assert (done.plugin_dir / "_vendor" / "impasto_client" / "__init__.py").is_file()
    assert (done.plugin_dir / "_vendor" / "py311" / "grpclib" / "__init__.py").is_file()
    assert (done.plugin_dir / "_vendor" / "impasto_common.py").is_file()


@pytest.mark.parametrize(
    ("platform", "env", "krita", "gimp"),
    [
        ("linux", {}, "~/.local/share/krita/pykrita", "~/.config/GIMP/3.0/plug-ins"),
        ("linux", {"XDG_DATA_HOME": "/x/data", "XDG_CONFIG_HOME": "/x/cfg"}, "/x/data/krita/pykrita",
         "/x/cfg/GIMP/3.0/plug-ins"),
        ("win32", {"APPDATA": "/w/AppData/Roaming"}, "/w/AppData/Roaming/krita/pykrita",
         "/w/AppData/Roaming/GIMP/3.0/plug-ins"),
        ("darwin", {}, "~/Library/Application Support/krita/pykrita",
         "~/Library/Application Support/GIMP/3.0/plug-ins"),
    ],
)
def test_default_folders_per_platform(platform: str, env: dict, krita: str, gimp: str) -> None:
    assert plugin_install.default_krita_dir(platform, env) == Path(krita).expanduser()
    assert plugin_install.default_gimp_dir(platform, env) == Path(gimp).expanduser()


def test_build_zip_has_what_kritas_importer_looks_for(tmp_path: Path, wheels: Path) -> None:
    out = plugin_install.build_krita_zip(tmp_path / "impasto-krita.zip", wheels)
    names = zipfile.ZipFile(out).namelist()
    assert {"impasto.desktop", "impasto.action", "impasto/", "impasto/__init__.py"} <= set(names)
    assert "impasto/_vendor/py310/grpclib/__init__.py" in names
    assert "impasto/_vendor/impasto_vendor.py" in names
    assert "impasto/_vendor/impasto_client/client.py" in names
    assert "impasto/_vendor/impasto_common.py" in names
    if not KRITA_IMPORTER.is_file():
        return
    # Krita's own importer, run as its module allows from the command line.
    resources = tmp_path / "resources"
    resources.mkdir()
    result = subprocess.run(["/usr/bin/python3", str(KRITA_IMPORTER), str(out), str(resources)],
                            capture_output=True, text=True, timeout=60)
    assert "Imported plugin: Impasto" in result.stdout, result.stderr
    assert (resources / "pykrita" / "impasto" / "_vendor" / "py313" / "hpack" / "__init__.py").is_file()
    assert (resources / "actions" / "impasto.action").is_file()


def test_cli_install_and_build(tmp_path: Path, wheels: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["plugin", "install", "krita", "--dest", str(tmp_path / "pk"), "--wheels", str(wheels)]) == 0
    out = capsys.readouterr().out
    assert "Python Plugin Manager" in out and "for Python 3.10, 3.11, 3.12, 3.13" in out
    zip_path = tmp_path / "p.zip"
    assert main(["plugin", "build", "krita", "-o", str(zip_path), "--wheels", str(wheels), "--python-version",
                 "3.10"]) == 0
    names = zipfile.ZipFile(zip_path).namelist()
    assert "impasto/_vendor/py310/multidict/__init__.py" in names
    assert not [n for n in names if n.startswith("impasto/_vendor/py311")]
    assert main(["plugin", "install", "krita", "--dest", str(tmp_path / "pk"), "--wheels",
                 str(tmp_path / "none")]) == 1
    assert "lacks" in capsys.readouterr().err
    assert main(["plugin", "install", "gimp", "--dest", str(tmp_path / "g"), "--python-version", "3.8"]) == 1
    assert "3.10 to 3.13" in capsys.readouterr().err
    # $IMPASTO_WHEELS stands for --wheels (CI sets it: no download at test time).
    monkeypatch.setenv("IMPASTO_WHEELS", str(wheels))
    assert main(["plugin", "install", "gimp", "--dest", str(tmp_path / "g")]) == 0
    # `plugin wheels` fills a folder (here: already full, so nothing is downloaded).
    assert main(["plugin", "wheels", "--dest", str(wheels)]) == 0
    assert f"{len(list(wheels.iterdir()))} wheels in {wheels}" in capsys.readouterr().out


def test_plugins_source_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMPASTO_PLUGINS_SOURCE", str(tmp_path))
    assert plugin_install.plugins_source() != tmp_path  # not a plugins folder: falls back to the checkout
    assert os.fspath(plugin_install.plugins_source()).endswith("plugins")


def _vendor_module():
    common_on_path()
    import impasto_vendor

    return impasto_vendor


def test_the_loader_knows_the_installers_pythons() -> None:
    vendor = _vendor_module()
    assert (vendor.OLDEST, vendor.NEWEST) == tuple(tuple(map(int, p.split("."))) for p in
                                                   (plugin_install.PYTHONS[0], plugin_install.PYTHONS[-1]))
    assert vendor.folders.__module__ == "impasto_vendor"


@pytest.mark.parametrize(
    ("made", "running", "chosen", "problem"),
    [
        (["py310", "py311", "py312", "py313"], (3, 12), "py312", ""),
        (["py310", "py311", "py312", "py313"], (3, 14), "py313", ""),  # newer than known: the newest set
        (["py310", "py311", "py312", "py313"], (3, 9), None, "needs Python 3.10 or newer, and this one is 3.9"),
        (["py311"], (3, 10), None, "installed for Python 3.11, but this one is 3.10: reinstall it with "
                                   "`impasto plugin install gimp` (for every Python, or --python-version 3.10)"),
        ([], (3, 11), None, "packages are missing: reinstall it with `impasto plugin install gimp`"),
    ],
)
def test_the_loader_picks_this_pythons_folder(tmp_path: Path, made: list[str], running: tuple[int, int],
                                              chosen: str | None, problem: str) -> None:
    for name in [*made, "py3x", "impasto_client"]:  # other folders are not wheel folders
        (tmp_path / name).mkdir()
    folder, why = _vendor_module().choose(str(tmp_path), running, "gimp")
    assert folder == (str(tmp_path / chosen) if chosen else None)
    assert problem in why and bool(problem) == bool(why)


def _import_client(vendor: Path) -> str:
    """What importing impasto_client says, in a Python that sees only plugins/common and `vendor` (activated
    as the plugins do it) and the standard library."""
    code = ("import impasto_vendor, sys; impasto_vendor.activate(sys.argv[1], 'krita')\n"
            "try:\n    import impasto_client\nexcept ImportError as exc:\n"
            "    print(type(exc).__name__, '|', exc)\n")
    env = {"PYTHONPATH": str(plugin_install.plugins_source() / "common")}
    out = subprocess.run([sys.executable, "-S", "-c", code, str(vendor)], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_client_import_fails_with_a_message_saying_what_to_do(tmp_path: Path) -> None:
    """ClientUnavailable is an ImportError (the plugins catch it and show its message), whatever went wrong."""
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    vendor = tmp_path / "_vendor"
    (vendor / "py310").mkdir(parents=True)  # installed for another Python only
    said = _import_client(vendor)
    assert said == (f"ClientUnavailable | the plugin was installed for Python 3.10, but this one is {here}: "
                    "reinstall it with `impasto plugin install krita` (for every Python, or --python-version "
                    f"{here})")
    # This Python's folder, but a package in it that breaks at import (as h2 did under 3.9: a TypeError).
    broken = vendor / plugin_install.vendor_folder(here) / "grpclib"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise TypeError('unsupported operand type(s) for |')\n")
    said = _import_client(vendor)
    assert said.startswith("ClientUnavailable | a package it needs does not load in Python")
    assert "(TypeError: unsupported operand type(s) for |); reinstall the plugin with `impasto plugin install" in said
