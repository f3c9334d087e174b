"""`impasto plugin install krita|gimp [--dest DIR]` and `impasto plugin build krita`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from impasto.cli import plugin_install


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


def _wheel_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wheels", type=Path, metavar="DIR",
                        help="take the pinned py3-none-any wheels from DIR instead of downloading them")
    parser.add_argument("--cache", type=Path, metavar="DIR", help="where downloaded wheels are kept")


def _install(args: argparse.Namespace) -> int:
    install = plugin_install.install_krita if args.editor == "krita" else plugin_install.install_gimp
    done = install(args.dest, args.wheels, args.cache)
    print(f"Installed the {args.editor.capitalize()} plugin in {done.plugin_dir}")
    print(done.how_to_enable)
    return 0


def _build(args: argparse.Namespace) -> int:
    path = plugin_install.build_krita_zip(args.output, args.wheels, args.cache)
    print(f"Wrote {path}")
    print("In Krita: Tools ▸ Scripts ▸ Import Python Plugin from File…, pick this zip, then restart Krita.")
    return 0
