"""Installing the editor plugins with their pure-Python dependencies.

Krita's and GIMP's own Pythons cannot be given compiled wheels reliably (Windows and macOS builds bundle
their own interpreter), so each plugin gets a private `_vendor` folder holding what the plugins share
(plugins/common: the client `impasto_client` and the `impasto_common` module) and the contents of pinned
`py3-none-any` wheels: grpclib and what it needs. Nothing third-party is committed to the repository:
the wheels come from pip (`pip download`, into a cache) or from a folder of wheels the user already has
(`--wheels DIR`, for offline machines)."""

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

# The pure-Python stack of the plugins' gRPC client. protobuf must be at least the version the client's
# generated code was made with (see plugins/common/impasto_client/_proto/impasto_pb2.py).
PINNED_WHEELS: dict[str, str] = {
    "grpclib": "0.4.9",
    "h2": "4.4.1",
    "hpack": "4.2.0",
    "hyperframe": "6.1.0",
    "multidict": "7.2.1",
    "protobuf": "7.36.2",
}
PLUGIN_NAME = "impasto"
# plugins/common/* that go into every plugin's _vendor folder (both plugins import each of them).
COMMON = ("impasto_client", "impasto_common.py")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "_vendor")

Download = Callable[[str, str, Path], None]  # (name, version, into_dir)


class InstallError(ImpastoError):
    code = "FAILED_PRECONDITION"


@dataclass(frozen=True)
class Installed:
    plugin_dir: Path
    files: tuple[Path, ...]  # the top-level things written (folders and files)
    how_to_enable: str


def plugins_source() -> Path:
    """plugins/ of this checkout (or $IMPASTO_PLUGINS_SOURCE): plugins ship as source, not in the wheel."""
    env = os.environ.get("IMPASTO_PLUGINS_SOURCE")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[3] / "plugins")
    for path in candidates:
        if (path / "krita" / "impasto.desktop").is_file() and all((path / "common" / c).exists() for c in COMMON):
            return path
    raise NotFound(
        "cannot find the plugins' source (plugins/krita, plugins/common)",
        hint="run from a source checkout of Impasto, or set IMPASTO_PLUGINS_SOURCE to its plugins/ folder",
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


def pip_download(name: str, version: str, into: Path) -> None:
    """Fetch one pure-Python wheel for Python 3.11 on any platform, whatever machine runs the installer."""
    command = [
        sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps",
        "--python-version", "3.11", "--implementation", "py", "--abi", "none", "--platform", "any",
        "--dest", str(into), f"{name}=={version}",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise InstallError(
            f"could not download {name}=={version} as a py3-none-any wheel: {last}",
            hint="check the network, or pass --wheels DIR with the wheels " + ", ".join(
                wheel_filename(n, v) for n, v in PINNED_WHEELS.items()),
        )


def find_wheels(wheels: Path | None = None, cache: Path | None = None,
                download: Download = pip_download) -> list[Path]:
    """The pinned wheels: from `wheels` when given (nothing is downloaded then), else from the cache,
    downloading what is missing."""
    if wheels is not None:
        names = [wheel_filename(n, v) for n, v in PINNED_WHEELS.items()]
        missing = [name for name in names if not (wheels / name).is_file()]
        if missing:
            raise InstallError(
                f"{wheels} lacks {', '.join(missing)}",
                hint="get them with `pip download --only-binary=:all: --no-deps NAME==VERSION -d DIR`",
            )
        return [wheels / wheel_filename(n, v) for n, v in PINNED_WHEELS.items()]
    cache = cache or default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    found: list[Path] = []
    for name, version in PINNED_WHEELS.items():
        path = cache / wheel_filename(name, version)
        if not path.is_file():
            download(name, version, cache)
        if not path.is_file():
            raise InstallError(f"pip did not produce {path.name}", hint="pass --wheels DIR with that wheel")
        found.append(path)
    return found


def extract_wheels(wheels: list[Path], into: Path) -> None:
    """Unpack wheels as pip would for pure-Python packages: their contents go straight onto sys.path."""
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if ".." in Path(member).parts or member.startswith("/"):
                    raise InstallError(f"{wheel.name} holds an unsafe path {member!r}")
            archive.extractall(into)


def _populate_vendor(vendor: Path, source: Path, wheels: list[Path]) -> None:
    vendor.mkdir(parents=True, exist_ok=True)
    extract_wheels(wheels, vendor)
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
                  download: Download = pip_download) -> Installed:
    """Put the Krita plugin into `dest` (a pykrita folder): impasto.desktop, impasto/ with its _vendor,
    and impasto.action into the sibling actions/ folder, where Krita reads default shortcuts."""
    source = plugins_source()
    wheel_files = find_wheels(wheels, cache, download)
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
        "Krita again, then show the docker with Settings ▸ Dockers ▸ Impasto.",
    )


def install_gimp(dest: Path | None = None, wheels: Path | None = None, cache: Path | None = None,
                 download: Download = pip_download) -> Installed:
    """Put the GIMP 3 plug-in folder into `dest` (a plug-ins folder): GIMP wants DEST/impasto/impasto.py,
    executable, the folder named after the script."""
    source = plugins_source()
    gimp_source = source / "gimp" / PLUGIN_NAME
    if not (gimp_source / f"{PLUGIN_NAME}.py").is_file():
        raise NotFound(f"{gimp_source / (PLUGIN_NAME + '.py')} is missing", hint="update your checkout")
    wheel_files = find_wheels(wheels, cache, download)
    dest = (dest or default_gimp_dir()).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    folder = dest / PLUGIN_NAME
    _replace_dir(folder)
    shutil.copytree(gimp_source, folder, ignore=_IGNORE)  # copy2 keeps the executable bit
    script = folder / f"{PLUGIN_NAME}.py"
    script.chmod(script.stat().st_mode | 0o111)
    _populate_vendor(folder / "_vendor", source, wheel_files)
    return Installed(folder, (folder,), "Restart GIMP: Filters ▸ Artistic ▸ Impasto Style… and "
                     "Image ▸ Upscale with Impasto… appear once the backend (`impasto serve`) runs.")


def build_krita_zip(output: Path | None = None, wheels: Path | None = None, cache: Path | None = None,
                    download: Download = pip_download) -> Path:
    """A zip for Krita's Tools ▸ Scripts ▸ Import Python Plugin from File: impasto.desktop, impasto.action
    and the impasto/ package (with _vendor) at the top level, which is what Krita's importer looks for."""
    output = output or Path.cwd() / f"impasto-krita-{__version__}.zip"
    with tempfile.TemporaryDirectory() as tmp:
        staged = install_krita(Path(tmp) / "resources" / "pykrita", wheels, cache, download)
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
