"""`impasto ...`: one entry point, one error handler (pypa/build style: main(argv) -> int).

Each command group lives in its own module with `register(subparsers)`, which adds a parser whose
`func(args) -> int` runs it. Add a module to COMMAND_MODULES to add commands. Command modules import only
argparse-level code at the top and the engine, server or training inside their functions, so `--help` and
argument errors never load torch (tests/unit/test_cli.py checks it).

May import everything in `impasto`; nothing imports `impasto.cli` but `__main__` and the console script."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from impasto import __version__
from impasto.cli import batch, demo, models, plugin, serve, study, stylize, train
from impasto.errors import ImpastoError

COMMAND_MODULES = (
    stylize,  # stylize, upscale
    batch,  # batch stylize/upscale (folders; local pool or Ray)
    models,  # models list/info/import/remove/pull
    demo,  # demo (the main job: every bundled model through a local backend)
    plugin,  # plugin install/build (Krita, GIMP)
    serve,  # serve (the gRPC backend)
    train,  # train style/sr, eval sr/style, gatys
    study,  # study build/serve/report (2AFC)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="impasto", description="Neural style transfer and super-resolution (Johnson et al. 2016)."
    )
    parser.add_argument("--version", action="version", version=f"impasto {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more, and show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        # gRPC's C core logs lines of its own to stderr (INFO: one per fork while OpenVINO converts a model;
        # ERROR: a failed bind, which `serve` reports in one line itself). Read when grpc loads, after this.
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ImpastoError as exc:
        print(f"impasto: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"impasto: {exc.hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("impasto: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `impasto models info X | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141
    except Exception as exc:  # the unexpected: a bug, so show where
        if args.verbose:
            raise
        logging.getLogger("impasto").exception("unexpected error")
        print(f"impasto: internal error: {exc!r}", file=sys.stderr)
        print("impasto: this is a bug; please report it with the output of `impasto -v ...`", file=sys.stderr)
        return 3
