"""`impasto batch stylize|upscale IN_DIR OUT_DIR`: a folder tree, resumable, locally or on Ray."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from impasto.cli.options import engine_config, engine_options, stylize_options, upscale_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("batch", help="stylize or upscale a whole folder tree (resumable; local pool or Ray)",
                       description="Walk IN_DIR and write each output at the same relative path in OUT_DIR. "
                                   "A rerun skips finished outputs, so an interrupted batch resumes.")
    ops = p.add_subparsers(dest="batch_op", metavar="OPERATION", required=True)

    s = ops.add_parser("stylize", help="apply a style network to every image")
    _batch_args(s)
    stylize_options(s)
    s.set_defaults(func=_stylize)

    u = ops.add_parser("upscale", help="super-resolve every image x2, x4 or x8")
    _batch_args(u)
    upscale_options(u)
    u.set_defaults(func=_upscale)


def _batch_args(p: argparse.ArgumentParser) -> None:
    from impasto.batch.job import FORMATS, MANIFEST_NAME

    p.add_argument("in_dir", metavar="IN_DIR", type=Path, help="folder of images (walked recursively)")
    p.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="folder for the outputs, same relative paths")
    engine_options(p)
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="model instances: default one per GPU, else one per CPU core (bounded by memory)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch threads per CPU worker (default: the cores shared out locally, 1 on Ray)")
    p.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="run on Ray: 'auto' starts a local instance, an address (host:6379, ray://host:10001) "
                        "joins a running cluster; needs impasto[ray]")
    p.add_argument("--format", choices=sorted(FORMATS), default=None,
                   help="output format (default: the input's own)")
    p.add_argument("--manifest", type=Path, default=None, metavar="PATH",
                   help=f"JSONL record of each input (default OUT_DIR/{MANIFEST_NAME})")
    p.add_argument("--overwrite", action="store_true", help="redo finished outputs instead of skipping them")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")


def _stylize(args: argparse.Namespace) -> int:
    from impasto.models.store import ModelStore

    ModelStore().get(args.style, "style")  # fail before starting workers
    return _run(args, "stylize", {"style": args.style, "strength": args.strength,
                                  "preserve_colors": args.preserve_colors, "scale": args.scale,
                                  "refine": args.refine})


def _upscale(args: argparse.Namespace) -> int:
    from impasto.models.store import ModelStore

    if args.model and args.model != "bicubic":
        info = ModelStore().get(args.model, "sr")
        if info.scale != args.scale:
            from impasto.errors import InvalidArgument

            raise InvalidArgument(f"model {info.name!r} upscales x{info.scale}, not x{args.scale}",
                                  hint=f"use --scale {info.scale}, or another model")
    return _run(args, "upscale", {"scale": args.scale, "model": args.model})


def _run(args: argparse.Namespace, op: str, options: dict[str, Any]) -> int:
    from impasto.batch.job import BatchJob
    from impasto.batch.run import run_batch
    from impasto.cancel import CancelToken
    from impasto.errors import InvalidArgument

    for name in ("workers", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise InvalidArgument(f"--{name} must be at least 1, got {getattr(args, name)}")
    job = BatchJob(op, options, engine_config(args), args.format)
    cancel = CancelToken()

    def on_sigint(signum: int, frame: Any) -> None:
        # First Ctrl-C: stop handing out images and record the ones in progress; the second one aborts.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        cancel.cancel()
        print("\nimpasto: stopping after the images in progress (Ctrl-C again to abandon them)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        summary = run_batch(job, args.in_dir, args.out_dir, workers=args.workers, threads=args.threads,
                            ray=args.ray,
                            manifest=args.manifest, overwrite=args.overwrite,
                            progress=not args.quiet and sys.stderr.isatty(), cancel=cancel)
    finally:
        signal.signal(signal.SIGINT, previous)
    for rel, error in summary.errors:
        print(f"impasto: skipped {rel}: {error}", file=sys.stderr)
    if not args.quiet:
        print(f"{summary.done} done, {summary.skipped} already finished, {summary.failed} failed "
              f"in {summary.seconds:.1f} s ({summary.rate:.2f} images/s)")
    if summary.interrupted:
        print("impasto: interrupted; run the same command again to finish", file=sys.stderr)
        return 130
    return 1 if summary.failed else 0
