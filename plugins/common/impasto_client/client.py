"""Blocking client for `impasto serve`, in pure Python (grpclib + h2 + protobuf), for the editor plugins.

Editors' bundled Pythons cannot load compiled wheels reliably, so this uses grpclib rather than grpcio and
never imports numpy: pixels travel as the editor's own bytes. Each call opens a connection, runs a private
asyncio loop until the call is done and closes it again, so it may be called from any thread (a plugin's
worker thread, typically) and no loop outlives the call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ssl as _ssl
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.exceptions import GRPCError, StreamTerminatedError
from impasto_common import DEFAULT_ADDRESS, REFINE, SCALE, STRENGTH, Progress, buffer_size

from impasto_client._proto import impasto_pb2 as pb
from impasto_client._proto.impasto_grpc import ImpastoStub
from impasto_client.errors import BackendError, BackendNotRunning, OperationCancelled

CHUNK_SIZE = 1 << 20  # 1 MiB: large enough to keep per-message overhead small, far below the 4 MiB limit
T = TypeVar("T")


class _Box(Generic[T]):
    """Holds a value without showing it in repr()."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value


class ImageResult(NamedTuple):
    """A result image: unpacks as `data, width, height, pixel_format`."""

    data: bytes
    width: int
    height: int
    pixel_format: str


@dataclass(frozen=True)
class ModelEntry:
    """One style or super-resolution model offered by the backend."""

    name: str
    kind: str  # "style" or "sr"
    display_name: str
    description: str
    scale: int
    arch: str
    license: str
    attribution: str
    thumbnail_png: bytes
    bundled: bool


@dataclass(frozen=True)
class ServerInfo:
    version: str
    device: str
    memory_total: int
    memory_available: int
    queue_length: int
    max_queue: int
    max_pixels: int
    operations: tuple[str, ...]


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address {address!r} should look like HOST:PORT, e.g. {DEFAULT_ADDRESS}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh loop; in a thread of its own if this thread runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


class ImpastoClient:
    """Talks to one backend. `token` is sent as `authorization: Bearer TOKEN` (needed off loopback);
    `ssl` is an `ssl.SSLContext` (or True for the system CAs) when the backend uses TLS; `timeout` is a
    deadline in seconds for each call (None: wait as long as the job takes)."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        token: str | None = None,
        *,
        ssl: _ssl.SSLContext | bool | None = None,
        timeout: float | None = None,
    ) -> None:
        self.address = address
        self.host, self.port = _split_address(address)
        self.token = token
        self.ssl = ssl
        self.timeout = timeout

    # -- public, blocking ----------------------------------------------------------------------------

    def list_models(self, kind: str = "") -> list[ModelEntry]:
        """Models the backend offers; `kind` is "", "style" or "sr"."""
        reply = self._call(lambda stub: stub.ListModels(pb.ListModelsRequest(kind=kind), **self._opts()))
        return [
            ModelEntry(m.name, m.kind, m.display_name or m.name, m.description, m.scale or 1, m.arch,
                       m.license, m.attribution, m.thumbnail_png, m.bundled)
            for m in reply.models
        ]

    def server_info(self) -> ServerInfo:
        i = self._call(lambda stub: stub.GetServerInfo(pb.GetServerInfoRequest(), **self._opts()))
        return ServerInfo(i.version, i.device, i.memory_total, i.memory_available, i.queue_length,
                          i.max_queue, i.max_pixels, tuple(i.operations))

    def stylize(
        self, data: bytes, width: int, height: int, pixel_format: str, style: str, *,
        strength: float = STRENGTH.default, preserve_colors: bool = False, refine: int = REFINE.default,
        scale: float = SCALE.default,
        progress: Progress | None = None, cancel: threading.Event | None = None,
    ) -> ImageResult:
        """Stylize an image; the result has the same size and pixel format (alpha kept)."""
        options = pb.StylizeOptions(style=style, strength=strength, preserve_colors=preserve_colors,
                                    scale=scale, refine=refine)
        header = pb.RequestHeader(image=self._image_header(width, height, pixel_format), stylize=options)
        return self._image_call("Stylize", header, [data], progress, cancel)

    def upscale(
        self, data: bytes, width: int, height: int, pixel_format: str, scale: int, *, model: str = "",
        progress: Progress | None = None, cancel: threading.Event | None = None,
    ) -> ImageResult:
        """Upscale by 2, 4 or 8; `model` "" picks the default for the scale, "bicubic" plain resampling."""
        header = pb.RequestHeader(image=self._image_header(width, height, pixel_format),
                                  upscale=pb.UpscaleOptions(scale=scale, model=model or ""))
        return self._image_call("Upscale", header, [data], progress, cancel)

    def gatys(
        self, data: bytes, width: int, height: int, pixel_format: str,
        style_data: bytes, style_width: int, style_height: int, style_pixel_format: str, *,
        iterations: int = 150, style_weight: float | None = None, content_weight: float | None = None,
        init: str = "content", max_size: int = 0,
        progress: Progress | None = None, cancel: threading.Event | None = None,
    ) -> ImageResult:
        """Stylize from any style image by optimisation (Gatys et al. 2016); slow, reports progress."""
        options = pb.GatysOptions(iterations=iterations, init=init, max_size=max_size)
        if style_weight is not None:
            options.style_weight = style_weight
        if content_weight is not None:
            options.content_weight = content_weight
        header = pb.RequestHeader(
            image=self._image_header(width, height, pixel_format),
            style_image=self._image_header(style_width, style_height, style_pixel_format),
            gatys=options,
        )
        return self._image_call("Gatys", header, [data, style_data], progress, cancel)

    def echo(self, data: bytes, width: int, height: int, pixel_format: str) -> ImageResult:
        """Send an image and get it back unchanged: checks the connection and measures the transport."""
        header = pb.RequestHeader(image=self._image_header(width, height, pixel_format))
        return self._image_call("Echo", header, [data], None, None)

    # -- internals -----------------------------------------------------------------------------------

    @staticmethod
    def _image_header(width: int, height: int, pixel_format: str) -> pb.ImageHeader:
        return pb.ImageHeader(pixel_format=pixel_format, width=width, height=height)

    def _opts(self) -> dict[str, Any]:
        metadata = {"authorization": f"Bearer {self.token}"} if self.token else None
        return {"timeout": self.timeout, "metadata": metadata}

    def _channel(self) -> Channel:
        # Wider HTTP/2 windows than grpclib's 4 MiB let a large layer stream without stalling on acks.
        config = Configuration(http2_connection_window_size=64 << 20, http2_stream_window_size=64 << 20)
        return Channel(self.host, self.port, ssl=self.ssl, config=config)

    def _call(self, fn: Callable[[ImpastoStub], Awaitable[T]], cancel: threading.Event | None = None) -> T:
        async def boxed(stub: ImpastoStub) -> _Box[T]:
            return _Box(await fn(stub))

        # Results travel boxed: asyncio.run() may repr its main task (Python 3.11 does when it restores the
        # SIGINT handler), and the repr of tens of megabytes of pixels takes seconds.
        async def main() -> _Box[T]:
            channel = self._channel()
            try:
                task = asyncio.ensure_future(boxed(ImpastoStub(channel)))
                if cancel is None:
                    return await task
                # Poll the caller's event: a threading.Event cannot wake an asyncio loop by itself.
                while not task.done():
                    if cancel.is_set():
                        task.cancel()  # grpclib resets the HTTP/2 stream, and the server stops the job
                        break
                    await asyncio.wait([task], timeout=0.05)
                try:
                    return await task
                except asyncio.CancelledError:
                    raise OperationCancelled() from None
            finally:
                channel.close()

        try:
            return _run(main()).value
        except GRPCError as exc:
            code = exc.status.name
            if code == "UNAVAILABLE" and "connect" in (exc.message or "").lower():
                raise BackendNotRunning(self.address, exc.message or "") from None
            if code == "CANCELLED":
                raise OperationCancelled(exc.message or "the operation was cancelled") from None
            raise BackendError(code, exc.message or "") from None
        # grpclib's deadline (it has already cancelled the call). Before Python 3.11, which some editors
        # bundle, asyncio's TimeoutError is not the builtin one; since 3.11 it is, and an OSError, so it
        # must be caught before the OSErrors below.
        except (asyncio.TimeoutError, TimeoutError):  # noqa: UP041
            raise BackendError("DEADLINE_EXCEEDED", f"the backend did not finish within {self.timeout} s") from None
        except _ssl.SSLError as exc:  # an OSError too, but the backend is there: say what is wrong
            raise BackendError("UNAVAILABLE", f"TLS with the backend at {self.address} failed: {exc}") from None
        except (ConnectionError, OSError) as exc:
            raise BackendNotRunning(self.address, str(exc)) from None
        except StreamTerminatedError as exc:
            raise BackendError("UNAVAILABLE", f"the backend closed the connection: {exc}") from None

    def _image_call(
        self, method: str, header: pb.RequestHeader, parts: list[bytes],
        progress: Progress | None, cancel: threading.Event | None,
    ) -> ImageResult:
        sizes = [(header.image, parts[0])] + ([(header.style_image, parts[1])] if len(parts) > 1 else [])
        for image, data in sizes:
            try:
                expected = buffer_size(image.width, image.height, image.pixel_format)
            except ValueError:
                continue  # the backend names what is wrong with the format
            if len(data) != expected:
                # Checked here too so a plugin bug shows before megabytes go over the wire.
                raise BackendError("INVALID_ARGUMENT", f"pixel buffer has {len(data)} bytes but "
                                   f"{image.width}x{image.height} {image.pixel_format} needs {expected}")

        async def call(stub: ImpastoStub) -> ImageResult:
            async with getattr(stub, method).open(**self._opts()) as stream:
                await stream.send_message(pb.ImageRequest(header=header))
                for part, data in enumerate(parts):
                    view = memoryview(data)
                    for start in range(0, len(view), CHUNK_SIZE):
                        chunk = pb.Chunk(part=part, data=bytes(view[start:start + CHUNK_SIZE]))
                        await stream.send_message(pb.ImageRequest(chunk=chunk))
                await stream.end()
                result: pb.ImageHeader | None = None
                chunks: list[bytes] = []
                async for reply in stream:
                    item = reply.WhichOneof("item")
                    if item == "progress" and progress is not None:
                        p = reply.progress
                        progress(p.stage, p.fraction, p.queue_position)
                    elif item == "result":
                        result = reply.result
                    elif item == "chunk":
                        chunks.append(reply.chunk)
            if result is None:
                raise BackendError("INTERNAL", "the backend ended the reply without a result image")
            return ImageResult(b"".join(chunks), result.width, result.height, result.pixel_format)

        return self._call(call, cancel)
