"""`impasto stylize` and `impasto upscale`: one image, several, or a folder."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from impasto.cancel import Progress
from impasto.cli.options import (
    engine_config,
    engine_options,
    remote_client,
    remote_options,
    stylize_options,
    upscale_options,
)
from impasto.errors import InvalidArgument

if TYPE_CHECKING:  # the engine pulls in torch: import it only when a command runs
    from impasto.engine.pixels import PixelBuffer


def _engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="IN", help="image file(s) or a folder")
    p.add_argument("output", metavar="OUT", help="output file, or a folder when IN is several files or a folder")
    engine_options(p)
    p.add_argument("--remote", metavar="ADDRESS", help="use a running `impasto serve` at ADDRESS instead")
    remote_options(p)  # --token, --token-file, --insecure-token, --tls-ca
    p.add_argument("--overwrite", action="store_true", help="allow an output to replace its own input file")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stylize", help="apply a style network to images")
    _engine_args(p)
    stylize_options(p)
    p.set_defaults(func=_stylize)

    p = sub.add_parser("upscale", help="super-resolve images x2, x4 or x8")
    _engine_args(p)
    upscale_options(p)
    p.set_defaults(func=_upscale)


def _pairs(inputs: list[str], output: str, overwrite: bool = False) -> list[tuple[Path, Path]]:
    """(input, output) for every image, checked before any work starts: outputs in a format we write, a
    folder as OUT when there are several inputs, and no output that is its own input (unless `overwrite`)."""
    from impasto.engine.imageio import SUFFIXES

    paths = [Path(p) for p in inputs]
    out = Path(output)
    pairs = []
    if len(paths) == 1 and not paths[0].is_dir():
        if not paths[0].exists():
            raise InvalidArgument(f"{paths[0]}: no such file")
        pairs.append((paths[0], out / paths[0].name if out.is_dir() else out))
    else:
        what = "a folder as input" if len(paths) == 1 else f"{len(paths)} inputs"
        if out.exists() and not out.is_dir():
            raise InvalidArgument(f"{out} is a file, but {what} need an output folder",
                                  hint="give a folder as OUT (it is created when missing)")
        if not out.exists() and out.suffix.lower() in SUFFIXES:
            raise InvalidArgument(f"{out} looks like a file name, but {what} need an output folder",
                                  hint=f"give a folder as OUT (e.g. {out.with_suffix('')}), or one input file")
        for p in paths:
            if p.is_dir():
                for f in sorted(p.rglob("*")):
                    if f.is_file() and f.suffix.lower() in SUFFIXES:
                        pairs.append((f, out / f.relative_to(p)))
            elif p.exists():
                pairs.append((p, out / p.name))
            else:
                raise InvalidArgument(f"{p}: no such file")
    if not pairs:
        raise InvalidArgument("no images found in the input", hint=f"supported: {', '.join(sorted(SUFFIXES))}")
    for src, dst in pairs:
        if dst.suffix.lower() not in SUFFIXES:
            raise InvalidArgument(f"{dst}: unknown output format {dst.suffix or '(no extension)'!r}",
                                  hint="end OUT with .png, .jpg, .tif, .webp or .bmp, or give an existing folder")
        if not overwrite and dst.exists() and os.path.samefile(src, dst):
            raise InvalidArgument(f"{dst} is also an input: writing it would replace the original",
                                  hint="write to another file or folder, or pass --overwrite to replace it")
    return pairs


def _progress_bar(enabled: bool, label: str) -> tuple[Progress, Callable[[], None]]:
    if not enabled:
        return (lambda stage, fraction: None), (lambda: None)
    from tqdm import tqdm

    bar = tqdm(total=1000, desc=label, unit="‰", leave=False, file=sys.stderr,
               bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")

    def update(stage: str, fraction: float) -> None:
        bar.set_description(f"{label} [{stage}]", refresh=False)
        bar.n = int(fraction * 1000)
        bar.refresh()

    return update, bar.close


def _run(args: argparse.Namespace, op: Callable[..., PixelBuffer]) -> int:
    from impasto.engine.imageio import read_image, write_image

    pairs = _pairs(args.inputs, args.output, args.overwrite)
    failures = 0
    for src, dst in pairs:
        try:
            # --max-pixels holds before decoding, for --remote too: the header says the size, the pixels cost it
            buf, meta = read_image(src, max_pixels=args.max_pixels)
            progress, close = _progress_bar(not args.quiet and sys.stderr.isatty(), src.name)
            try:
                result = op(buf, progress)
            finally:
                close()
            write_image(dst, result, meta)
            if not args.quiet:
                print(f"{src} -> {dst} ({result.width}x{result.height})")
        except InvalidArgument as exc:
            if len(pairs) == 1:
                raise
            failures += 1
            print(f"impasto: skipped {src}: {exc.message}", file=sys.stderr)
    return 1 if failures else 0


def _engine(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from impasto.engine.engine import Engine

    return Engine(engine_config(args))


def _stylize(args: argparse.Namespace) -> int:
    if args.remote:
        client = remote_client(args)

        def remote(buf: PixelBuffer, progress: Progress) -> PixelBuffer:
            # a PixelBuffer travels in its own format (order, depth, linear) and comes back the same
            out: PixelBuffer = client.stylize(buf, args.style, strength=args.strength,
                                              preserve_colors=args.preserve_colors, refine=args.refine,
                                              scale=args.scale, progress=lambda s, f, *_: progress(s, f))
            return out

        return _run(args, remote)
    engine = _engine(args)
    engine.store.get(args.style, "style")  # fail before reading any image

    def local(buf: PixelBuffer, progress: Progress) -> PixelBuffer:
        return engine.stylize(buf, args.style, strength=args.strength, preserve_colors=args.preserve_colors,
                              scale=args.scale, refine=args.refine, progress=progress)

    return _run(args, local)


def _upscale(args: argparse.Namespace) -> int:
    if args.remote:
        client = remote_client(args)

        def remote(buf: PixelBuffer, progress: Progress) -> PixelBuffer:
            out: PixelBuffer = client.upscale(buf, args.scale, model=args.model,
                                              progress=lambda s, f, *_: progress(s, f))
            return out

        return _run(args, remote)
    engine = _engine(args)

    def local(buf: PixelBuffer, progress: Progress) -> PixelBuffer:
        return engine.upscale(buf, args.scale, model=args.model, progress=progress)

    return _run(args, local)
