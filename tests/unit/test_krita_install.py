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

KRITA_IMPORTER = Path("/usr/share/krita/pykrita/plugin_importer/plugin_importer.py")


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    """One tiny py3-none-any wheel per pinned package: a module and its dist-info."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    for name, version in plugin_install.PINNED_WHEELS.items():
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
    assert done.plugin_dir == dest / "impasto"
    assert (dest / "impasto.desktop").is_file() and (dest / "impasto" / "__init__.py").is_file()
    assert (tmp_path / "krita" / "actions" / "impasto.action").is_file()
    vendor = dest / "impasto" / "_vendor"
    for top in ("grpclib", "h2", "hpack", "hyperframe", "multidict", "google/protobuf", "impasto_client"):
        assert (vendor / top / "__init__.py").is_file(), top
    assert (vendor / "impasto_client" / "_proto" / "impasto_pb2.py").is_file()
    assert (vendor / "impasto_common.py").is_file()
    assert not list(dest.rglob("__pycache__"))
    # Installing again replaces the old copy instead of mixing with it.
    (dest / "impasto" / "stale.py").write_text("")
    plugin_install.install_krita(dest, wheels)
    assert not (dest / "impasto" / "stale.py").exists()


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
    # The plugin package puts its _vendor on sys.path; the modules that need no Qt or Krita then load.
    seen = _run_isolated("import impasto, impasto.formats, impasto.settings, impasto.jobs, impasto.controller, "
                         "impasto_common; print(impasto_common.__file__, impasto.formats.Rect.__module__)",
                         [krita.plugin_dir.parent], tmp_path)
    assert seen == [str(krita.plugin_dir / "_vendor" / "impasto_common.py"), "impasto_common"]
    gimp = plugin_install.install_gimp(tmp_path / "plug-ins", wheels)
    # impasto.py puts its own folder and _vendor on sys.path before importing impasto_logic.
    seen = _run_isolated("import impasto_logic, impasto_common; print(impasto_common.__file__, "
                         "impasto_logic.Rect is impasto_common.Rect)",
                         [gimp.plugin_dir, gimp.plugin_dir / "_vendor"], tmp_path)
    assert seen == [str(gimp.plugin_dir / "_vendor" / "impasto_common.py"), "True"]


def test_missing_wheels_are_named(tmp_path: Path, wheels: Path) -> None:
    (wheels / plugin_install.wheel_filename("h2", plugin_install.PINNED_WHEELS["h2"])).unlink()
    with pytest.raises(plugin_install.InstallError, match="h2-"):
        plugin_install.install_krita(tmp_path / "pykrita", wheels)


def test_downloads_only_what_the_cache_lacks(tmp_path: Path, wheels: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / plugin_install.wheel_filename("h2", "4.4.1")).write_bytes(
        (wheels / plugin_install.wheel_filename("h2", "4.4.1")).read_bytes())
    fetched = []

    def download(name: str, version: str, into: Path) -> None:
        fetched.append(name)
        target = plugin_install.wheel_filename(name, version)
        (into / target).write_bytes((wheels / target).read_bytes())

    found = plugin_install.find_wheels(None, cache, download)
    assert len(found) == len(plugin_install.PINNED_WHEELS) and "h2" not in fetched and "grpclib" in fetched


def test_install_gimp_keeps_the_script_executable(tmp_path: Path, wheels: Path) -> None:
    source = plugin_install.plugins_source() / "gimp" / "impasto" / "impasto.py"
    if not source.is_file():
        pytest.skip("plugins/gimp is not in this checkout yet")
    done = plugin_install.install_gimp(tmp_path / "plug-ins", wheels)
    script = done.plugin_dir / "impasto.py"
    assert done.plugin_dir == tmp_path / "plug-ins" / "impasto"
    assert script.stat().st_mode & stat.S_IXUSR
    assert (done.plugin_dir / "_vendor" / "impasto_client" / "__init__.py").is_file()
    assert (done.plugin_dir / "_vendor" / "grpclib" / "__init__.py").is_file()
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
    assert "impasto/_vendor/grpclib/__init__.py" in names
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
    assert (resources / "pykrita" / "impasto" / "_vendor" / "hpack" / "__init__.py").is_file()
    assert (resources / "actions" / "impasto.action").is_file()


def test_cli_install_and_build(tmp_path: Path, wheels: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugin", "install", "krita", "--dest", str(tmp_path / "pk"), "--wheels", str(wheels)]) == 0
    assert "Python Plugin Manager" in capsys.readouterr().out
    zip_path = tmp_path / "p.zip"
    assert main(["plugin", "build", "krita", "-o", str(zip_path), "--wheels", str(wheels)]) == 0
    assert zip_path.is_file()
    assert main(["plugin", "install", "krita", "--dest", str(tmp_path / "pk"), "--wheels",
                 str(tmp_path / "none")]) == 1
    assert "lacks" in capsys.readouterr().err


def test_plugins_source_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMPASTO_PLUGINS_SOURCE", str(tmp_path))
    assert plugin_install.plugins_source() != tmp_path  # not a plugins folder: falls back to the checkout
    assert os.fspath(plugin_install.plugins_source()).endswith("plugins")
