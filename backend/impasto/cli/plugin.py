"""`impasto plugin install krita|gimp`, `impasto plugin build krita` and `impasto plugin wheels`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from impasto.cli import plugin_install

EDITORS = {"krita": "Krita", "gimp": "GIMP"}
PYTHON_HELP = (f"only the wheels for this Python ({', '.join(plugin_install.PYTHONS)}; default: all of them, each "
               "in its own folder, so any of those editor Pythons works)")


def register(subparsers: Any) -> None:
    plugin = subparsers.add_parser("plugin", help="install the Krita or GIMP plugin")
    sub = plugin.add_subparsers(dest="plugin_command", metavar="ACTION", required=True)

    install = sub.add_parser("install", help="copy a plugin and its pure-Python dependencies into an editor")
    install.add_argument("editor", choices=("krita", "gimp"))
    install.add_argument("--dest", type=Path, help="pykrita or GIMP plug-ins folder (default: this user's)")
    _wheel_options(install)
    install.set_defaults(func=_install)

    build = sub.add_parser("build", help="write a zip for Krita's Import Python Plugin from File")
    build.add_argument("editor", choices=("krita",))
    build.add_argument("-o", "--output", type=Path, help="zip to write (default: ./impasto-krita-VER.zip)")
    _wheel_options(build)
    build.set_defaults(func=_build)

    wheels = sub.add_parser("wheels", help="download the plugins' pinned wheels into a folder (for offline "
                            "machines: then install with --wheels DIR)")
    wheels.add_argument("--dest", type=Path, metavar="DIR", help="folder to fill (default: the cache)")
    wheels.add_argument("--python-version", metavar="X.Y", help=PYTHON_HELP)
    wheels.set_defaults(func=_wheels)


def _wheel_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wheels", type=Path, metavar="DIR", default=os.environ.get("IMPASTO_WHEELS") or None,
                        help="take the pinned py3-none-any wheels from DIR instead of downloading them "
                             "(default: $IMPASTO_WHEELS when set)")
    parser.add_argument("--cache", type=Path, metavar="DIR", help="where downloaded wheels are kept")
    parser.add_argument("--python-version", metavar="X.Y", help=PYTHON_HELP)


def _install(args: argparse.Namespace) -> int:
    install = plugin_install.install_krita if args.editor == "krita" else plugin_install.install_gimp
    done = install(args.dest, args.wheels, args.cache, python=args.python_version)
    print(f"Installed the {EDITORS[args.editor]} plugin in {done.plugin_dir} "
          f"(for Python {', '.join(done.pythons)})")
    print(done.how_to_enable)
    return 0


def _build(args: argparse.Namespace) -> int:
    path = plugin_install.build_krita_zip(args.output, args.wheels, args.cache, python=args.python_version)
    print(f"Wrote {path}")
    print("In Krita: Tools ▸ Scripts ▸ Import Python Plugin from File…, pick this zip, then restart Krita.")
    return 0


def _wheels(args: argparse.Namespace) -> int:
    found = plugin_install.find_wheels(None, args.dest, pythons=plugin_install.target_pythons(args.python_version))
    files = sorted({path for paths in found.values() for path in paths})
    print(f"{len(files)} wheels in {files[0].parent}")
    return 0
