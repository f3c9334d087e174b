"""`impasto stylize` and `impasto upscale`: one image, several, or a folder."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from impasto.cancel import Progress
from impasto.errors import InvalidArgument

if TYPE_CHECKING:  # the engine pulls in torch: import it only when a command runs
    from impasto.engine.engine import EngineConfig
    from impasto.engine.pixels import PixelBuffer


def _engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="IN", help="image file(s) or a folder")
    p.add_argument("output", metavar="OUT", help="output file, or a folder when IN is several files or a folder")
    engine_options(p)
    p.add_argument("--remote", metavar="ADDRESS", help="use a running `impasto serve` at ADDRESS instead")
    p.add_argument("--token", help="token for --remote")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def engine_options(p: argparse.ArgumentParser) -> None:
    """Options that configure a local Engine; shared with `impasto batch`."""
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--tile-size", type=int, default=512, metavar="N", help="tile side when tiling (default 512)")
    p.add_argument("--memory-budget", type=float, default=None, metavar="GIB",
                   help="working memory per network call, GiB (default: from free memory)")
    p.add_argument("--max-pixels", type=int, default=64_000_000, metavar="N",
                   help="refuse images with more pixels (default 64,000,000)")
    p.add_argument("--no-bf16", action="store_true", help="run in fp32 even where bf16 is supported")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network (pays off on big batches; implies the torch runtime)")
    runtime_option(p)


def runtime_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runtime", choices=("auto", "openvino", "torch"), default="auto",
                   help="what runs the networks: auto (OpenVINO on the CPU, torch on CUDA/MPS; default), "
                        "openvino, or torch (the reference)")


def stylize_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--style", required=True, help="style name (see `impasto models list`)")
    p.add_argument("--strength", type=float, default=1.0, help="0..1, blend with the original (default 1)")
    p.add_argument("--preserve-colors", action="store_true", help="keep the original colours")
    p.add_argument("--scale", type=float, default=1.0, help="processing scale, 0.25..4 (default 1)")
    p.add_argument("--refine", type=int, default=0, metavar="N", help="Gatys refinement iterations (default 0)")


def upscale_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", type=int, choices=(2, 4, 8), default=4)
    p.add_argument("--model", default=None, help="SR model name, or 'bicubic' (default: best for the scale)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stylize", help="apply a style network to images")
    _engine_args(p)
    stylize_options(p)
    p.set_defaults(func=_stylize)

    p = sub.add_parser("upscale", help="super-resolve images x2, x4 or x8")
    _engine_args(p)
    upscale_options(p)
    p.set_defaults(func=_upscale)


def _pairs(inputs: list[str], output: str) -> list[tuple[Path, Path]]:
    from impasto.engine.imageio import SUFFIXES

    paths = [Path(p) for p in inputs]
    out = Path(output)
    if len(paths) == 1 and not paths[0].is_dir():
        if not paths[0].exists():
            raise InvalidArgument(f"{paths[0]}: no such file")
        if out.is_dir():
            return [(paths[0], out / paths[0].name)]
        return [(paths[0], out)]
    pairs = []
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

    pairs = _pairs(args.inputs, args.output)
    failures = 0
    for src, dst in pairs:
        try:
            buf, meta = read_image(src)
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


def engine_config(args: argparse.Namespace) -> EngineConfig:
    """The EngineConfig that `engine_options` describe."""
    from impasto.engine.engine import EngineConfig

    budget = int(args.memory_budget * 2**30) if args.memory_budget else None
    return EngineConfig(device=args.device, tile_size=args.tile_size, memory_budget=budget,
                        bf16=False if args.no_bf16 else None, compile=args.compile, max_pixels=args.max_pixels,
                        runtime=args.runtime)


def _engine(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from impasto.engine.engine import Engine

    return Engine(engine_config(args))


def _stylize(args: argparse.Namespace) -> int:
    if args.remote:
        from impasto.serve.client import Client

        client = Client(args.remote, token=args.token)

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
        from impasto.serve.client import Client

        client = Client(args.remote, token=args.token)

        def remote(buf: PixelBuffer, progress: Progress) -> PixelBuffer:
            out: PixelBuffer = client.upscale(buf, args.scale, model=args.model,
                                              progress=lambda s, f, *_: progress(s, f))
            return out

        return _run(args, remote)
    engine = _engine(args)

    def local(buf: PixelBuffer, progress: Progress) -> PixelBuffer:
        return engine.upscale(buf, args.scale, model=args.model, progress=progress)

    return _run(args, local)
