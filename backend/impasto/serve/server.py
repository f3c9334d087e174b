"""`impasto serve`: the gRPC servicer (thin: convert the request, call the engine, convert back) and the
server around it (job queue, health, reflection, token check, TLS, graceful shutdown).

Domain errors carry their gRPC status code and are mapped in one place (`_abort`); anything else is a
bug, logged with its traceback and answered INTERNAL, so no input can take the server down.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from impasto import __version__
from impasto._proto import impasto_pb2 as pb
from impasto._proto import impasto_pb2_grpc as pb_grpc
from impasto.cancel import CancelToken, Progress
from impasto.device import device_memory, release_device_memory
from impasto.engine.pixels import PixelBuffer
from impasto.errors import ImpastoError, InvalidArgument, Unavailable
from impasto.limits import SCALE_DEFAULT, STRENGTH_DEFAULT
from impasto.serve import wire
from impasto.serve.access import TokenInterceptor, bind_problem
from impasto.serve.jobs import JobQueue
from impasto.serve.limits import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_UPLOAD_BUDGET,
    RESERVED_THREADS,
    IdleWatch,
    StreamGate,
    Upload,
    Watched,
    default_max_streams,
)

if TYPE_CHECKING:
    from impasto.engine.engine import Engine
    from impasto.models.info import ModelInfo

log = logging.getLogger(__name__)

# What the image RPCs' handlers receive: plain chunks as wire.RawChunk views, everything else parsed
# (wire.Malformed for bytes that were not an ImageRequest).
Requests = wire.Requests

CHUNK_SIZE = 1 << 20  # ~1 MiB messages: streaming beats one huge unary message (and its 4 MiB limit)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Impasto"].full_name


MAX_DETAILS = 1000  # bytes of an error message: it travels in a trailer, which clients cap at 8 KiB


def shorten(text: str, limit: int = MAX_DETAILS) -> str:
    """`text` cut in the middle to at most about `limit` UTF-8 bytes: messages echo what clients sent (a
    name, a format), which can be any length; the start and the end (often a list of choices) are kept."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    head = raw[: limit * 2 // 3].decode(errors="ignore")
    tail = raw[-(limit // 3):].decode(errors="ignore")
    return f"{head}... ({len(raw) - limit:,} bytes cut) ...{tail}"


def _abort(context: grpc.ServicerContext, exc: BaseException, method: str) -> NoReturn:
    """The one place where errors become gRPC statuses."""
    if isinstance(exc, ImpastoError):
        code = grpc.StatusCode[exc.code]
        message = shorten(f"{exc.message}; {exc.hint}" if exc.hint else exc.message)
        log.info("%s refused (%s): %s", method, exc.code, message)
    elif isinstance(exc, grpc.RpcError) or not context.is_active():
        # The request stream raises a bare RpcError when the client cancels, disconnects or runs out of time
        # (or the idle watch closed the call): an ordinary end of a call, not a bug.
        log.info("%s ended early: the client cancelled or went away", method)
        code, message = grpc.StatusCode.CANCELLED, "the call was cancelled"
    else:
        log.error("unexpected error in %s", method, exc_info=exc)
        code = grpc.StatusCode.INTERNAL
        message = shorten(f"internal error in {method}: {exc!r} (a bug; see the server log)")
    _drop_tracebacks(exc)
    context.abort(code, message)
    raise AssertionError("unreachable: context.abort raises")


def _drop_tracebacks(exc: BaseException | None) -> None:
    # A traceback's frames hold the call's images, and it often sits in a reference cycle with them (the error
    # in a local variable of a frame it lists; grpc's record of a cancelled call's RpcError): without it the
    # images are freed when the call ends, not at some later garbage collection.
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc.with_traceback(None)
        exc = exc.__cause__ or exc.__context__


def _rpc(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Route a handler's exceptions through `_abort` (streaming handlers are generators)."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                yield from fn(self, request, context)
            except Exception as exc:
                _abort(context, exc, fn.__name__)

        return stream

    @functools.wraps(fn)
    def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            if isinstance(request, wire.Malformed):  # bytes that were not the request message
                raise request.error
            return fn(self, request, context)
        except Exception as exc:
            _abort(context, exc, fn.__name__)

    return unary


# ListModels answers in one message: its thumbnails together stay under this, so the answer fits a client's
# default 4 MiB receive limit however many user models there are (each thumbnail is capped at 256 KiB when a
# model is read). Past it, models are listed without their thumbnail (bundled models come first).
LIST_THUMBNAIL_BUDGET = 3 << 20


def model_to_pb(m: ModelInfo, thumbnail: bool = True) -> pb.ModelInfo:
    return pb.ModelInfo(
        name=m.name, kind=m.kind, arch=m.arch, scale=m.scale, display_name=m.display_name,
        description=m.description, license=m.license, attribution=m.attribution, source=m.source,
        sha256=m.sha256, thumbnail_png=(m.thumbnail_png or b"") if thumbnail else b"", bundled=m.bundled,
        tiling_exact=m.tiling_exact, training_json=json.dumps(m.training) if m.training else "",
    )


def models_to_pb(models: list[ModelInfo], budget: int = LIST_THUMBNAIL_BUDGET) -> list[pb.ModelInfo]:
    """Every model, with thumbnails while they fit `budget` bytes in all (bundled models' first)."""
    out: dict[str, pb.ModelInfo] = {}
    for m in sorted(models, key=lambda m: not m.bundled):
        size = len(m.thumbnail_png or b"")
        out[m.name] = model_to_pb(m, thumbnail=size <= budget)
        budget -= size if size <= budget else 0
    return [out[m.name] for m in models]


def _progress(stage: str, fraction: float = 0.0, position: int = 0) -> pb.ImageResponse:
    return pb.ImageResponse(progress=pb.Progress(stage=stage, fraction=fraction, queue_position=position))


def _deadline(context: grpc.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class ImpastoServicer(pb_grpc.ImpastoServicer):
    def __init__(self, engine: Engine, jobs: JobQueue, gate: StreamGate | None = None,
                 idle: IdleWatch | None = None) -> None:
        self.engine = engine
        self.jobs = jobs
        self.gate = gate or StreamGate(default_max_streams(jobs.max_queue), DEFAULT_UPLOAD_BUDGET)
        self.idle = idle or IdleWatch(DEFAULT_IDLE_TIMEOUT)

    @_rpc
    def ListModels(self, request: pb.ListModelsRequest, context: grpc.ServicerContext) -> pb.ListModelsResponse:
        if request.kind not in ("", "style", "sr"):
            raise InvalidArgument(f"unknown model kind {request.kind!r}; expected '', 'style' or 'sr'")
        return pb.ListModelsResponse(models=models_to_pb(self.engine.models(request.kind or None)))

    @_rpc
    def GetServerInfo(self, request: pb.GetServerInfoRequest, context: grpc.ServicerContext) -> pb.ServerInfo:
        total, available = device_memory(self.engine.device)
        return pb.ServerInfo(
            version=__version__, device=self.engine.device_name, memory_total=total, memory_available=available,
            queue_length=len(self.jobs), max_queue=self.jobs.max_queue,
            max_pixels=self.engine.config.max_pixels, operations=self.engine.operations(),
        )

    @_rpc
    def Stylize(self, requests: Requests, context: grpc.ServicerContext) -> Iterator[Any]:
        with self._stream(context) as (upload, watched):
            header, images = self._receive(requests, "stylize", upload, watched)
            o = header.stylize
            strength = o.strength if o.HasField("strength") else STRENGTH_DEFAULT
            scale = o.scale if o.HasField("scale") else SCALE_DEFAULT

            def work(progress: Progress, cancel: CancelToken) -> PixelBuffer:
                return self.engine.stylize(images[0], o.style, strength=strength, preserve_colors=o.preserve_colors,
                                           scale=scale, refine=o.refine, progress=progress, cancel=cancel)

            yield from self._run_job("stylize", work, context, watched)

    @_rpc
    def Upscale(self, requests: Requests, context: grpc.ServicerContext) -> Iterator[Any]:
        with self._stream(context) as (upload, watched):
            header, images = self._receive(requests, "upscale", upload, watched)
            o = header.upscale

            def work(progress: Progress, cancel: CancelToken) -> PixelBuffer:
                return self.engine.upscale(images[0], o.scale, model=o.model or None, progress=progress,
                                           cancel=cancel)

            yield from self._run_job("upscale", work, context, watched)

    @_rpc
    def Gatys(self, requests: Requests, context: grpc.ServicerContext) -> Iterator[Any]:
        with self._stream(context) as (upload, watched):
            header, images = self._receive(requests, "gatys", upload, watched)
            o = header.gatys

            def work(progress: Progress, cancel: CancelToken) -> PixelBuffer:
                return self.engine.gatys(
                    images[0], images[1], iterations=o.iterations or 150,
                    content_weight=o.content_weight if o.HasField("content_weight") else None,
                    style_weight=o.style_weight if o.HasField("style_weight") else None,
                    init=o.init or "content", max_size=o.max_size, progress=progress, cancel=cancel,
                )

            yield from self._run_job("gatys", work, context, watched)

    @_rpc
    def Echo(self, requests: Requests, context: grpc.ServicerContext) -> Iterator[Any]:
        # No queue and no engine: the same receive/convert/send path as a real job, minus the work.
        with self._stream(context) as (upload, watched):
            _, images = self._receive(requests, None, upload, watched)
            yield from self._send(images[0], watched)

    @contextlib.contextmanager
    def _stream(self, context: grpc.ServicerContext) -> Iterator[tuple[Upload, Watched]]:
        """An image stream's slot, upload reservation and idle watch, all given back when the call ends."""
        with self.gate.open() as upload, self.idle.watch(context) as watched:
            context.add_callback(upload.close)  # also when the handler is left suspended by a vanished client
            yield upload, watched

    def _receive(self, requests: Requests, op: str | None, upload: Upload,
                 watched: Watched) -> tuple[pb.RequestHeader, list[PixelBuffer]]:
        """The header, then the image(s), admitted against the upload budget from the header (wire.receive)."""

        def touching() -> Iterator[Any]:
            for message in requests:
                watched.touch()
                yield message

        header, images = wire.receive(touching(), op, check_size=self.engine.check_size, admit=upload.reserve,
                                      before_pixels=self.jobs.check_open if op is not None else lambda: None)
        watched.pause()  # the job's time is the server's, not the client's
        return header, images

    def _run_job(self, name: str, work: Callable[[Progress, CancelToken], PixelBuffer],
                 context: grpc.ServicerContext, watched: Watched) -> Iterator[pb.ImageResponse | bytes]:
        cancel = CancelToken(deadline=_deadline(context))
        # Fires when the RPC ends for any reason: a client's cancel or deadline stops the job at its next check.
        context.add_callback(cancel.cancel)
        job = self.jobs.submit(work, cancel, name)
        for event in job.stream():
            if event.kind == "queued":
                yield _progress("queued", 0.0, event.position)
            elif event.kind == "progress":
                yield _progress(event.stage, event.fraction)
            elif event.kind == "error":
                assert event.error is not None
                raise event.error
            else:
                yield from self._send(event.result, watched)

    @staticmethod
    def _send(image: PixelBuffer, watched: Watched) -> Iterator[pb.ImageResponse | bytes]:
        fmt = image.format
        watched.touch()  # a client that stops reading the result is closed like one that stops sending
        yield pb.ImageResponse(result=pb.ImageHeader(pixel_format=fmt.name, width=image.width,
                                                     height=image.height))
        # Chunks are serialised straight from a flat byte view of the pixels (see wire.py).
        arr = np.ascontiguousarray(image.array, dtype=fmt.dtype)
        view = arr.reshape(-1).view(np.uint8).data
        for start in range(0, len(view), CHUNK_SIZE):
            watched.touch()
            yield wire.response_chunk(view[start:start + CHUNK_SIZE])
        watched.pause()


def _handlers(servicer: ImpastoServicer) -> grpc.GenericRpcHandler:
    """Like the generated add_ImpastoServicer_to_server, but the image streams use wire.py's chunk codec."""
    unary: dict[str, tuple[Any, Any]] = {
        "ListModels": (pb.ListModelsRequest, pb.ListModelsResponse),
        "GetServerInfo": (pb.GetServerInfoRequest, pb.ServerInfo),
    }
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, name), request_deserializer=wire.lenient(req), response_serializer=reply.SerializeToString
        )
        for name, (req, reply) in unary.items()
    }
    for name in ("Stylize", "Upscale", "Gatys", "Echo"):
        handlers[name] = grpc.stream_stream_rpc_method_handler(
            getattr(servicer, name), request_deserializer=wire.request_deserializer, response_serializer=wire.serialize
        )
    missing = set(pb.DESCRIPTOR.services_by_name["Impasto"].methods_by_name) - handlers.keys()
    assert not missing, f"RPCs without a handler: {missing}"
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


@dataclass
class ServerConfig:
    address: str = "127.0.0.1:50051"
    max_queue: int = 8
    token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    grace: float = 5.0  # seconds running jobs get to finish on shutdown before they are cancelled
    max_streams: int | None = None  # image streams open at once; None: max_queue + limits.EXTRA_STREAMS
    upload_budget: int = DEFAULT_UPLOAD_BUDGET  # bytes the images of open streams may hold together
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT  # seconds a stream may send (or read) nothing before it is closed


class ImpastoServer:
    """The grpcio server with the Impasto, health and reflection services."""

    def __init__(self, engine: Engine, config: ServerConfig) -> None:
        self.config = config
        self.jobs = JobQueue(config.max_queue, name=str(getattr(engine, "device", "device")),
                             after_job=functools.partial(release_device_memory, engine.device))
        self.health = health.HealthServicer()
        max_streams = config.max_streams or default_max_streams(config.max_queue)
        self.gate = StreamGate(max_streams, config.upload_budget)
        self.idle = IdleWatch(config.idle_timeout)
        # Image streams may take `max_streams` threads and no more (the gate refuses the next one at once), so
        # the reserved ones keep ListModels / GetServerInfo / health answering whatever the streams do; past
        # that many calls at once, gRPC itself answers RESOURCE_EXHAUSTED instead of letting them hang.
        threads = max_streams + RESERVED_THREADS
        options = [
            ("grpc.so_reuseport", 0),  # a second server on a taken port must fail, not share it
            ("grpc.max_receive_message_length", 16 << 20),
            ("grpc.max_send_message_length", 16 << 20),
        ]
        interceptors = [TokenInterceptor(config.token)] if config.token else []
        pool = futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="impasto-rpc")
        self.server = grpc.server(pool, options=options, interceptors=interceptors, maximum_concurrent_rpcs=threads)
        self.server.add_generic_rpc_handlers((_handlers(ImpastoServicer(engine, self.jobs, self.gate, self.idle)),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.server,
        )
        self.address = ""

    def start(self) -> str:
        """Bind and start; returns the bound HOST:PORT (the real port when the address asked for port 0)."""
        cfg = self.config
        try:
            if cfg.tls_cert or cfg.tls_key:
                if not (cfg.tls_cert and cfg.tls_key):
                    raise InvalidArgument("TLS needs both --tls-cert and --tls-key")
                creds = grpc.ssl_server_credentials([(cfg.tls_key.read_bytes(), cfg.tls_cert.read_bytes())])
                port = self.server.add_secure_port(cfg.address, creds)
            else:
                port = self.server.add_insecure_port(cfg.address)
        except RuntimeError:  # newer grpcio raises instead of returning 0
            port = 0
        except OSError as exc:
            raise InvalidArgument(f"cannot read the TLS files: {exc}") from None
        if port == 0:
            raise Unavailable(f"cannot listen on {cfg.address}: {bind_problem(cfg.address)}",
                              hint="stop the other server, or pick another port with --address HOST:PORT")
        self.server.start()
        for service in ("", SERVICE_NAME):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        self.address = f"{cfg.address.rpartition(':')[0]}:{port}"
        return self.address

    def stop(self, grace: float | None = None) -> None:
        """Health goes NOT_SERVING, new jobs are refused, running ones get `grace` seconds, then the rest
        are cancelled and the server stops."""
        grace = self.config.grace if grace is None else grace
        self.health.enter_graceful_shutdown()
        self.jobs.shutdown(grace)
        # A job that finished within the grace period still has its result to send (a 2048x2048 float image is
        # 64 MB): its handler gets as long again, or 1 s, to deliver it rather than have it thrown away. Handlers
        # of cancelled jobs only send their CANCELLED status; `wait` returns as soon as every handler is done.
        self.server.stop(max(grace, 1.0)).wait()
        self.idle.close()

    def wait(self, timeout: float | None = None) -> bool:
        return self.server.wait_for_termination(timeout)
