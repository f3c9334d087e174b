"""Installing the editor plugins with their pure-Python dependencies.

Krita's and GIMP's own Pythons cannot be given compiled wheels reliably (Windows and macOS builds bundle
their own interpreter), so each plugin gets a private `_vendor` folder holding what the plugins share
(plugins/common: the client `impasto_client`, the `impasto_common` module and the `impasto_vendor` loader)
and, per Python version, the contents of pinned `py3-none-any` wheels: grpclib and what it needs. Nothing
third-party is committed to the repository: the wheels come from pip (`pip download`, into a cache) or from
a folder of wheels the user already has (`--wheels DIR`, for offline machines)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from impasto import __version__
from impasto.errors import ImpastoError, NotFound

# The pure-Python stack of the plugins' gRPC client, per Python minor version the editors embed (Krita 5.2
# on Windows and macOS: 3.10; Linux builds and GIMP 3: the system's, 3.11 to 3.13). Every wheel must be
# py3-none-any and declare support for that Python (`impasto plugin wheels` fetches them all). protobuf
# must be at least the version the client's generated code was made with
# (plugins/common/impasto_client/_proto/impasto_pb2.py).
_PINS = {"grpclib": "0.4.9", "h2": "4.4.1", "hpack": "4.2.0", "hyperframe": "6.1.0", "multidict": "7.2.1",
         "protobuf": "7.36.2"}
PINS: dict[str, dict[str, str]] = {
    # multidict 7.2 imports typing.Self (3.11+); 7.1 is the same code with typing_extensions for 3.10.
    "3.10": {**_PINS, "multidict": "7.1.0", "typing_extensions": "4.16.0"},
    "3.11": _PINS,
    "3.12": _PINS,
    "3.13": _PINS,
}
PYTHONS = tuple(PINS)  # oldest first; plugins/common/impasto_vendor.py knows the same range
PLUGIN_NAME = "impasto"
# plugins/common/* that go into every plugin's _vendor folder (the plugins import each of them).
COMMON = ("impasto_client", "impasto_common.py", "impasto_vendor.py")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "_vendor")

Download = Callable[[str, str, str, Path], None]  # (name, version, python "X.Y", into_dir)


class InstallError(ImpastoError):
    code = "FAILED_PRECONDITION"


@dataclass(frozen=True)
class Installed:
    plugin_dir: Path
    files: tuple[Path, ...]  # the top-level things written (folders and files)
    how_to_enable: str
    pythons: tuple[str, ...] = PYTHONS  # the Pythons the plugin has wheels for


def _is_plugins(path: Path) -> bool:
    return (path / "krita" / "impasto.desktop").is_file() and all((path / "common" / c).exists() for c in COMMON)


def plugins_source() -> Path:
    """The plugins' source: $IMPASTO_PLUGINS_SOURCE, else the copy a built wheel carries (impasto/_plugins,
    see setup.py), else plugins/ of the source checkout this package runs from (editable installs)."""
    env = os.environ.get("IMPASTO_PLUGINS_SOURCE")
    here = Path(__file__).resolve()
    candidates = [Path(env)] if env else []
    candidates += [here.parents[1] / "_plugins", here.parents[3] / "plugins"]
    for path in candidates:
        if _is_plugins(path):
            return path
    raise NotFound(
        "cannot find the plugins' source (plugins/krita, plugins/common)",
        hint="reinstall Impasto from its wheel or a source checkout, or set IMPASTO_PLUGINS_SOURCE to a "
             "checkout's plugins/ folder",
    )


def _home() -> Path:
    return Path.home()


def default_krita_dir(platform: str = sys.platform, env: dict[str, str] | None = None) -> Path:
    """Krita's per-user pykrita folder on this platform."""
    env = dict(os.environ) if env is None else env
    if platform == "win32":
        return Path(env.get("APPDATA") or _home() / "AppData" / "Roaming") / "krita" / "pykrita"
    if platform == "darwin":
        return _home() / "Library" / "Application Support" / "krita" / "pykrita"
    data = env.get("XDG_DATA_HOME") or str(_home() / ".local" / "share")
    return Path(data) / "krita" / "pykrita"


def default_gimp_dir(platform: str = sys.platform, env: dict[str, str] | None = None) -> Path:
    """GIMP 3's per-user plug-ins folder on this platform."""
    env = dict(os.environ) if env is None else env
    if platform == "win32":
        return Path(env.get("APPDATA") or _home() / "AppData" / "Roaming") / "GIMP" / "3.0" / "plug-ins"
    if platform == "darwin":
        return _home() / "Library" / "Application Support" / "GIMP" / "3.0" / "plug-ins"
    config = env.get("XDG_CONFIG_HOME") or str(_home() / ".config")
    return Path(config) / "GIMP" / "3.0" / "plug-ins"


def default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("impasto")) / "plugin-wheels"


def wheel_filename(name: str, version: str) -> str:
    return f"{name.replace('-', '_')}-{version}-py3-none-any.whl"


def vendor_folder(python: str) -> str:
    """_vendor's subfolder for one Python: "3.10" -> "py310" (impasto_vendor.py picks it at run time)."""
    major, minor = python.split(".")
    return f"py{major}{minor}"


def target_pythons(python: str | None = None) -> tuple[str, ...]:
    """The Pythons to install wheels for: all of PYTHONS (the editor's Python is not known when installing,
    and an editor update may change it), or the one given."""
    if python is None:
        return PYTHONS
    if python not in PINS:
        raise InstallError(
            f"the plugins run on Python {PYTHONS[0]} to {PYTHONS[-1]}, not {python!r}",
            hint="leave out --python-version to install for all of them (a newer Python uses the newest set)",
        )
    return (python,)


def _needed(pythons: tuple[str, ...]) -> dict[tuple[str, str], str]:
    """Each pinned (name, version) the Pythons need, with the oldest Python that needs it (pip checks the
    wheel's Requires-Python against that one)."""
    needed: dict[tuple[str, str], str] = {}
    for python in pythons:
        for pin in PINS[python].items():
            needed.setdefault(pin, python)
    return needed


def pip_download(name: str, version: str, python: str, into: Path) -> None:
    """Fetch one pure-Python wheel for `python` on any platform, whatever machine runs the installer."""
    command = [
        sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps",
        "--python-version", python, "--implementation", "py", "--abi", "none", "--platform", "any",
        "--dest", str(into), f"{name}=={version}",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise InstallError(
            f"could not download {name}=={version} as a py3-none-any wheel for Python {python}: {last}",
            hint="check the network, or pass --wheels DIR with the wheels " + ", ".join(
                sorted({wheel_filename(n, v) for n, v in _needed(PYTHONS)})),
        )


def find_wheels(wheels: Path | None = None, cache: Path | None = None, download: Download = pip_download,
                pythons: tuple[str, ...] = PYTHONS) -> dict[str, list[Path]]:
    """The pinned wheels of each Python in `pythons`: from `wheels` when given (nothing is downloaded then),
    else from the cache, downloading what is missing."""
    needed = _needed(pythons)
    if wheels is not None:
        missing = sorted({wheel_filename(n, v) for n, v in needed if not (wheels / wheel_filename(n, v)).is_file()})
        if missing:
            raise InstallError(
                f"{wheels} lacks {', '.join(missing)}",
                hint="get them with `impasto plugin wheels --dest DIR` on a machine with network access",
            )
        folder = wheels
    else:
        folder = cache or default_cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        for (name, version), python in needed.items():
            path = folder / wheel_filename(name, version)
            if not path.is_file():
                download(name, version, python, folder)
            if not path.is_file():
                raise InstallError(f"pip did not produce {path.name}", hint="pass --wheels DIR with that wheel")
    return {python: [folder / wheel_filename(n, v) for n, v in PINS[python].items()] for python in pythons}


def extract_wheels(wheels: list[Path], into: Path) -> None:
    """Unpack wheels as pip would for pure-Python packages: their contents go straight onto sys.path."""
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if ".." in Path(member).parts or member.startswith("/"):
                    raise InstallError(f"{wheel.name} holds an unsafe path {member!r}")
            archive.extractall(into)


def _populate_vendor(vendor: Path, source: Path, wheels: dict[str, list[Path]]) -> None:
    """_vendor/: what the plugins share (Python 3.8+, standard library only) and, in one pyXY folder per
    Python, that Python's wheels; impasto_vendor.activate() puts the right one on sys.path."""
    vendor.mkdir(parents=True, exist_ok=True)
    for python, files in wheels.items():
        extract_wheels(files, vendor / vendor_folder(python))
    for name in COMMON:
        if (source / "common" / name).is_dir():
            shutil.copytree(source / "common" / name, vendor / name, ignore=_IGNORE)
        else:
            shutil.copy2(source / "common" / name, vendor / name)


def _replace_dir(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def install_krita(dest: Path | None = None, wheels: Path | None = None, cache: Path | None = None,
                  download: Download = pip_download, python: str | None = None) -> Installed:
    """Put the Krita plugin into `dest` (a pykrita folder): impasto.desktop, impasto/ with its _vendor,
    and impasto.action into the sibling actions/ folder, where Krita reads default shortcuts. `python`
    ("3.10", ...) limits the wheels to that Python's; by default every supported Python gets its own."""
    source = plugins_source()
    pythons = target_pythons(python)
    wheel_files = find_wheels(wheels, cache, download, pythons)
    dest = (dest or default_krita_dir()).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    package = dest / PLUGIN_NAME
    _replace_dir(package)
    shutil.copytree(source / "krita" / PLUGIN_NAME, package, ignore=_IGNORE)
    _populate_vendor(package / "_vendor", source, wheel_files)
    shutil.copy2(source / "krita" / f"{PLUGIN_NAME}.desktop", dest / f"{PLUGIN_NAME}.desktop")
    actions = dest.parent / "actions"
    actions.mkdir(exist_ok=True)
    shutil.copy2(source / "krita" / f"{PLUGIN_NAME}.action", actions / f"{PLUGIN_NAME}.action")
    return Installed(
        package, (package, dest / f"{PLUGIN_NAME}.desktop", actions / f"{PLUGIN_NAME}.action"),
        "Restart Krita, enable “Impasto” in Settings ▸ Configure Krita ▸ Python Plugin Manager, restart "
        "Krita again, then show the docker with Settings ▸ Dockers ▸ Impasto.", pythons,
    )


def install_gimp(dest: Path | None = None, wheels: Path | None = None, cache: Path | None = None,
                 download: Download = pip_download, python: str | None = None) -> Installed:
    """Put the GIMP 3 plug-in folder into `dest` (a plug-ins folder): GIMP wants DEST/impasto/impasto.py,
    executable, the folder named after the script."""
    source = plugins_source()
    gimp_source = source / "gimp" / PLUGIN_NAME
    if not (gimp_source / f"{PLUGIN_NAME}.py").is_file():
        raise NotFound(f"{gimp_source / (PLUGIN_NAME + '.py')} is missing", hint="update your checkout")
    pythons = target_pythons(python)
    wheel_files = find_wheels(wheels, cache, download, pythons)
    dest = (dest or default_gimp_dir()).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    folder = dest / PLUGIN_NAME
    _replace_dir(folder)
    shutil.copytree(gimp_source, folder, ignore=_IGNORE)  # copy2 keeps the executable bit
    script = folder / f"{PLUGIN_NAME}.py"
    script.chmod(script.stat().st_mode | 0o111)
    _populate_vendor(folder / "_vendor", source, wheel_files)
    return Installed(folder, (folder,), "Restart GIMP: Filters ▸ Artistic ▸ Impasto Style… and "
                     "Image ▸ Upscale with Impasto… appear once the backend (`impasto serve`) runs.", pythons)


def build_krita_zip(output: Path | None = None, wheels: Path | None = None, cache: Path | None = None,
                    download: Download = pip_download, python: str | None = None) -> Path:
    """A zip for Krita's Tools ▸ Scripts ▸ Import Python Plugin from File: impasto.desktop, impasto.action
    and the impasto/ package (with _vendor) at the top level, which is what Krita's importer looks for."""
    output = output or Path.cwd() / f"impasto-krita-{__version__}.zip"
    with tempfile.TemporaryDirectory() as tmp:
        staged = install_krita(Path(tmp) / "resources" / "pykrita", wheels, cache, download, python)
        pykrita = staged.plugin_dir.parent
        action = pykrita.parent / "actions" / f"{PLUGIN_NAME}.action"
        output.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.write(pykrita / f"{PLUGIN_NAME}.desktop", f"{PLUGIN_NAME}.desktop")
            archive.write(action, f"{PLUGIN_NAME}.action")
            archive.writestr(f"{PLUGIN_NAME}/", "")  # Krita's importer finds the package by its folder entry
            for path in sorted(staged.plugin_dir.rglob("*")):
                name = path.relative_to(pykrita).as_posix()
                if path.is_dir():
                    archive.writestr(name + "/", "")
                else:
                    archive.write(path, name)
    return output
