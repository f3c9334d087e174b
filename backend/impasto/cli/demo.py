"""`impasto demo`: show the whole thing working, offline, on the bundled models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from impasto.cli.options import runtime_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="stylize and upscale bundled samples through a local backend; writes HTML")
    p.add_argument("--out", default="impasto-demo", help="output folder (default impasto-demo)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    runtime_option(p)
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from impasto.cli.demo_run import run_demo

    bar = tqdm(total=None, desc="demo", file=sys.stderr, bar_format="{desc}: {n} steps, {elapsed}",
               disable=not sys.stderr.isatty())

    def say(message: str) -> None:
        bar.set_description(message)
        bar.update(1)

    try:
        index = run_demo(Path(args.out), progress=say, device=args.device, runtime=args.runtime)
    finally:
        bar.close()
    print(f"impasto: demo written to {index} (contact sheet: {index.parent / 'contact-sheet.png'})")
    return 0
