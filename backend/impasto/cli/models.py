"""`impasto models list|info|import|remove|pull`."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list, inspect, import, remove or download models")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    q = msub.add_parser("list", help="bundled and user models")
    q.add_argument("--json", action="store_true")
    q.add_argument("--kind", choices=("style", "sr"))
    q.set_defaults(func=_list)
    q = msub.add_parser("info", help="everything a model file says about itself")
    q.add_argument("name")
    q.set_defaults(func=_info)
    q = msub.add_parser("import", help="add a model (.safetensors, pytorch/examples .pth, ml5 folder, SRGAN .pth)")
    q.add_argument("path")
    q.add_argument("--name", help="name in the store (default: from the file name)")
    q.add_argument("--overwrite", action="store_true", help="replace a user model of the same name")
    q.set_defaults(func=_import)
    q = msub.add_parser("remove", help="delete a user model")
    q.add_argument("name")
    q.set_defaults(func=_remove)
    q = msub.add_parser("pull", help="download a well-known public model (needs a network)")
    q.add_argument("name", nargs="?", help="omit to list what can be pulled")
    q.add_argument("--overwrite", action="store_true", help="replace a user model of the same name")
    q.set_defaults(func=_pull)


def _list(args: argparse.Namespace) -> int:
    from impasto.models.store import ModelStore

    store = ModelStore()
    infos = store.list(args.kind)
    if args.json:
        print(json.dumps([i.to_json() | {"path": str(i.path)} for i in infos], indent=2))
        return 0
    print(f"{'NAME':<18} {'KIND':<6} {'SCALE':<5} {'ARCH':<11} {'WHERE':<8} DESCRIPTION")
    for i in infos:
        where = "bundled" if i.bundled else "user"
        print(f"{i.name:<18} {i.kind:<6} {'x' + str(i.scale) if i.kind == 'sr' else '':<5} {i.arch:<11} "
              f"{where:<8} {i.display_name}")
    for name, why in store.broken.items():
        print(f"impasto: warning: skipped {name}: {why}", file=sys.stderr)
    return 0


def _info(args: argparse.Namespace) -> int:
    from impasto.models.store import ModelStore

    info = ModelStore().get(args.name)
    d = info.to_json() | {"path": str(info.path)}
    for k, v in d.items():
        print(f"{k:>16}: {json.dumps(v) if isinstance(v, (dict, list)) else v}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from impasto.models.store import ModelStore

    info = ModelStore().import_path(Path(args.path), args.name, overwrite=args.overwrite)
    print(f"imported {info.name} ({info.kind}, {info.arch}) -> {info.path}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from impasto.models.store import ModelStore

    ModelStore().remove(args.name)
    print(f"removed {args.name}")
    return 0


def _pull(args: argparse.Namespace) -> int:
    from impasto.models.pull import manifest, pull
    from impasto.models.store import ModelStore

    if not args.name:
        for name, e in manifest().items():
            print(f"{name:<22} {e['license']}")
        return 0
    from tqdm import tqdm

    bar = tqdm(unit="B", unit_scale=True, desc=args.name, file=sys.stderr, disable=not sys.stderr.isatty())

    def progress(done: int, total: int) -> None:
        bar.total = total or None
        bar.n = done
        bar.refresh()

    try:
        info = pull(ModelStore(), args.name, progress=progress, overwrite=args.overwrite)
    finally:
        bar.close()
    print(f"pulled {info.name} -> {info.path}")
    return 0
