"""`impasto serve`: run the gRPC backend the editor plugins and `impasto.serve.client.Client` talk to."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from impasto.cli.options import engine_config, engine_options, token, token_options
from impasto.errors import InvalidArgument
from impasto.serve.limits import DEFAULT_IDLE_TIMEOUT, DEFAULT_UPLOAD_BUDGET, EXTRA_STREAMS

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve", help="run the gRPC backend for Krita, GIMP and remote clients",
        description="Serve stylize/upscale over gRPC. Prints 'impasto: serving on HOST:PORT' once it listens "
                    "(use port 0 to let the system pick one). Stops cleanly on Ctrl+C or SIGTERM.",
    )
    p.add_argument("--address", default="127.0.0.1:50051",
                   help="HOST:PORT to listen on (default 127.0.0.1:50051); non-loopback hosts need a token and TLS")
    engine_options(p)  # --device, --tile-size, --memory-budget, --max-pixels, --no-bf16, --compile
    p.add_argument("--max-queue", type=int, default=8, metavar="N",
                   help="jobs waiting or running before new ones are refused (default 8)")
    p.add_argument("--max-streams", type=int, default=None, metavar="N",
                   help="image calls open at once, uploading, queued or running; more are refused "
                        f"(default --max-queue + {EXTRA_STREAMS})")
    p.add_argument("--upload-budget", type=float, default=DEFAULT_UPLOAD_BUDGET / 2**30, metavar="GIB",
                   help="memory the images of open calls may hold together, GiB; a call is admitted from its "
                        f"header (default {DEFAULT_UPLOAD_BUDGET / 2**30:g})")
    p.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT, metavar="S",
                   help="close an image call that sends or reads nothing for S seconds "
                        f"(default {DEFAULT_IDLE_TIMEOUT:g})")
    token_options(p, "require clients to send this token (needed off loopback)")
    p.add_argument("--tls-cert", type=Path, default=None, metavar="FILE", help="PEM certificate for TLS")
    p.add_argument("--tls-key", type=Path, default=None, metavar="FILE", help="PEM private key for TLS")
    p.add_argument("--warmup", action="store_true",
                   help="load and convert the bundled styles and default SR models before serving")
    p.add_argument("--grace", type=float, default=5.0, metavar="S",
                   help="seconds running jobs may finish on shutdown before they are cancelled (default 5)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # gRPC's C core logs its own lines (e.g. a failed bind) to stderr; we report those errors in one line
    # ourselves, so keep it quiet unless asked. Read once when grpc loads, hence before the imports below.
    if not getattr(args, "verbose", False):
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    # Imported here so `impasto --help` does not load torch and grpc.
    from impasto.engine.engine import Engine
    from impasto.serve.access import check_token_transport, is_loopback
    from impasto.serve.server import ImpastoServer, ServerConfig

    secret = token(args)
    if not is_loopback(args.address) and not secret:
        raise InvalidArgument(
            f"{args.address} is reachable from other machines, so it needs a token",
            hint="add --token-file FILE or set IMPASTO_TOKEN (clients send the token), or listen on 127.0.0.1",
        )
    check_token_transport(args.address, secret, bool(args.tls_cert or args.tls_key), args.insecure_token,
                          "--tls-cert FILE --tls-key FILE")
    if args.max_queue < 1 or args.max_pixels < 1 or (args.max_streams is not None and args.max_streams < 1):
        raise InvalidArgument("--max-queue, --max-streams and --max-pixels must be at least 1")
    if not (args.upload_budget > 0 and args.idle_timeout > 0):  # also refuses NaN
        raise InvalidArgument("--upload-budget and --idle-timeout must be positive")
    engine = Engine(engine_config(args))
    if args.warmup:
        print(f"impasto: warmed up {', '.join(engine.warmup())}", flush=True)
    config = ServerConfig(address=args.address, max_queue=args.max_queue, token=secret,
                          tls_cert=args.tls_cert, tls_key=args.tls_key, grace=args.grace,
                          max_streams=args.max_streams, upload_budget=int(args.upload_budget * 2**30),
                          idle_timeout=args.idle_timeout)
    server = ImpastoServer(engine, config)
    address = server.start()
    print(f"impasto: serving on {address} (device {engine.device_name})", flush=True)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():  # a second Ctrl+C: the user does not want to wait for the grace period
            print("impasto: stopped without waiting for running jobs", file=sys.stderr, flush=True)
            os._exit(130)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
        print("impasto: shutting down", file=sys.stderr, flush=True)
        server.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
