"""Command-line options shared by several commands: the local engine's (stylize, upscale, batch, serve), the
operations' (stylize, upscale, batch) and the token/TLS options of a server and its remote clients.

Argparse-level only at the top: what the options turn into (EngineConfig, a Client) is imported inside the
functions that build it, so building the parser loads neither torch nor grpc."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from impasto.errors import InvalidArgument

if TYPE_CHECKING:
    from impasto.engine.engine import EngineConfig


def engine_options(p: argparse.ArgumentParser) -> None:
    """Options that configure a local Engine; shared with `impasto batch`."""
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--tile-size", type=int, default=None, metavar="N",
                   help="process in tiles of N px even when the image fits in memory (default: tile only when it "
                        "does not fit, at 512 px)")
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


def engine_config(args: argparse.Namespace) -> EngineConfig:
    """The EngineConfig that `engine_options` describe."""
    from impasto.engine.engine import EngineConfig

    budget = int(args.memory_budget * 2**30) if args.memory_budget else None
    if args.tile_size is not None and args.tile_size < 16:
        raise InvalidArgument(f"--tile-size must be at least 16, got {args.tile_size}")
    return EngineConfig(device=args.device, tile_size=args.tile_size or 512, force_tiles=args.tile_size is not None,
                        memory_budget=budget,
                        bf16=False if args.no_bf16 else None, compile=args.compile, max_pixels=args.max_pixels,
                        runtime=args.runtime)


def stylize_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--style", required=True, help="style name (see `impasto models list`)")
    p.add_argument("--strength", type=float, default=1.0, help="0..1, blend with the original (default 1)")
    p.add_argument("--preserve-colors", action="store_true", help="keep the original colours")
    p.add_argument("--scale", type=float, default=1.0, help="processing scale, 0.25..4 (default 1)")
    p.add_argument("--refine", type=int, default=0, metavar="N", help="Gatys refinement iterations (default 0)")


def upscale_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", type=int, choices=(2, 4, 8), default=4)
    p.add_argument("--model", default=None, help="SR model name, or 'bicubic' (default: best for the scale)")


def token_options(p: argparse.ArgumentParser, what: str) -> None:
    """--token, --token-file and --insecure-token (and $IMPASTO_TOKEN), for the server and the clients."""
    p.add_argument("--token", default=None, help=f"{what}; visible to other local users in the process list, so "
                                                 "prefer --token-file or the IMPASTO_TOKEN environment variable")
    p.add_argument("--token-file", type=Path, default=None, metavar="FILE",
                   help="read the token from FILE (default: $IMPASTO_TOKEN, if set)")
    p.add_argument("--insecure-token", action="store_true",
                   help="allow a token over plain TCP to or from another machine (a private network only)")


def token(args: argparse.Namespace) -> str | None:
    """The token the options and the environment give, with a warning for one typed on the command line."""
    from impasto.serve.access import resolve_token

    if args.token is not None:
        print("impasto: warning: a --token on the command line is visible to other users of this machine; "
              "use --token-file FILE or IMPASTO_TOKEN", file=sys.stderr)
    return resolve_token(args.token, args.token_file)


def remote_options(p: argparse.ArgumentParser) -> None:
    """The options of a `--remote` client (`impasto stylize|upscale --remote ADDRESS`)."""
    token_options(p, "token for --remote")
    p.add_argument("--tls-ca", type=Path, default=None, metavar="FILE",
                   help="for --remote over TLS: PEM certificate(s) to trust")


def remote_client(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The Client that --remote, the token options and --tls-ca describe."""
    from impasto.serve.access import check_token_transport
    from impasto.serve.client import Client

    secret = token(args)
    check_token_transport(args.remote, secret, args.tls_ca is not None, args.insecure_token, "--tls-ca FILE")
    try:
        roots = args.tls_ca.read_bytes() if args.tls_ca is not None else None
    except OSError as exc:
        raise InvalidArgument(f"cannot read {args.tls_ca}: {exc.strerror or exc}") from None
    return Client(args.remote, token=secret, root_certificates=roots)
