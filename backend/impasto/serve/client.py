"""Python client for `impasto serve` (grpcio + numpy), for scripts, batch jobs and `--remote`.

    from impasto.serve.client import Client
    with Client("127.0.0.1:50051") as client:
        out = client.stylize(np.asarray(img), "udnie")      # (H, W, 3|4) uint8/uint16/float32 in and out

Images go out and come back in ~1 MiB chunks; server errors are raised as the same `impasto.errors` classes
the engine raised on the server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import numpy as np

from impasto import errors
from impasto._proto import impasto_pb2 as pb
from impasto._proto import impasto_pb2_grpc as pb_grpc
from impasto.cancel import CancelToken, Progress
from impasto.engine.pixels import PixelBuffer, PixelFormat
from impasto.models.info import ModelInfo
from impasto.serve import wire

CHUNK_SIZE = 1 << 20
SERVICE = pb.DESCRIPTOR.services_by_name["Impasto"].full_name
ImageT = TypeVar("ImageT")


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


def _to_buffer(image: Any) -> tuple[PixelBuffer, Callable[[PixelBuffer], Any]]:
    """The image as a PixelBuffer, and how to turn a result back into the caller's kind of image."""
    if isinstance(image, PixelBuffer):
        return image, lambda buf: buf
    if isinstance(image, np.ndarray):
        return PixelBuffer.from_array(image), lambda buf: buf.array
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency, but keep the message clear
        Image = None  # type: ignore[assignment]
    if Image is not None and isinstance(image, Image.Image):
        # 8-bit RGB(A) stays as it is; other modes (palette, grey, CMYK) travel as RGBA or RGB.
        mode = image.mode if image.mode in ("RGB", "RGBA") else ("RGBA" if "A" in image.getbands() else "RGB")
        arr = np.asarray(image.convert(mode) if mode != image.mode else image)
        return PixelBuffer.from_array(arr), lambda buf: Image.fromarray(buf.array, mode)
    raise errors.InvalidArgument(
        f"cannot send a {type(image).__name__}; pass a numpy array (H, W, 3|4) or a PIL image"
    )


def _byte_view(buf: PixelBuffer) -> memoryview:
    # A flat byte view of the pixels, so chunks are sliced without first copying the whole image.
    arr = np.ascontiguousarray(buf.array, dtype=buf.format.dtype)
    return arr.reshape(-1).view(np.uint8).data


def _requests(header: pb.RequestHeader, images: list[PixelBuffer]) -> Iterator[pb.ImageRequest | bytes]:
    yield pb.ImageRequest(header=header)
    for part, image in enumerate(images):
        view = _byte_view(image)
        for start in range(0, len(view), CHUNK_SIZE):
            yield wire.request_chunk(part, view[start:start + CHUNK_SIZE])  # serialised from the view


def _image_header(buf: PixelBuffer) -> pb.ImageHeader:
    return pb.ImageHeader(pixel_format=buf.format.name, width=buf.width, height=buf.height)


def _error(exc: grpc.RpcError, address: str) -> errors.ImpastoError:
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
    if code == grpc.StatusCode.UNAVAILABLE:
        return errors.Unavailable(f"no Impasto backend answers at {address}; start it with "
                                  f"`impasto serve --address {address}` ({details})")
    return errors.from_code(code.name, details)


class Client:
    """A connection to one backend. `token`: sent as `authorization: Bearer TOKEN`; `root_certificates`:
    PEM bytes to trust for TLS (None: plain TCP); `timeout`: deadline in seconds for each call."""

    def __init__(self, address: str = "127.0.0.1:50051", token: str | None = None, *,
                 root_certificates: bytes | None = None, timeout: float | None = None) -> None:
        self.address = address
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        options = [("grpc.max_receive_message_length", 16 << 20), ("grpc.max_send_message_length", 16 << 20)]
        if root_certificates is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.secure_channel(address, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self._stub = pb_grpc.ImpastoStub(self._channel)
        # The image streams use wire.py's chunk codec rather than the generated classes (speed).
        self._image_methods = {
            name: self._channel.stream_stream(f"/{SERVICE}/{name}", request_serializer=wire.serialize,
                                              response_deserializer=wire.decode_response)
            for name in ("Stylize", "Upscale", "Gatys", "Echo")
        }

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def models(self, kind: str | None = None) -> list[ModelInfo]:
        try:
            reply = self._stub.ListModels(pb.ListModelsRequest(kind=kind or ""), timeout=self.timeout,
                                          metadata=self._metadata)
        except grpc.RpcError as exc:
            raise _error(exc, self.address) from None
        return [
            ModelInfo(
                name=m.name, kind=m.kind, arch=m.arch, scale=m.scale, display_name=m.display_name,
                description=m.description, license=m.license, attribution=m.attribution, source=m.source,
                sha256=m.sha256, training=json.loads(m.training_json) if m.training_json else None,
                thumbnail_png=m.thumbnail_png or None, tiling_exact=m.tiling_exact, bundled=m.bundled,
            )
            for m in reply.models
        ]

    def info(self) -> ServerInfo:
        try:
            i = self._stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise _error(exc, self.address) from None
        return ServerInfo(i.version, i.device, i.memory_total, i.memory_available, i.queue_length, i.max_queue,
                          i.max_pixels, tuple(i.operations))

    def stylize(self, image: ImageT, style: str, *, strength: float = 1.0, preserve_colors: bool = False,
                refine: int = 0, scale: float = 1.0, progress: Progress | None = None,
                cancel: CancelToken | None = None) -> ImageT:
        """Stylize with a feed-forward style network (Johnson et al. 2016); same size and format back."""
        buf, back = _to_buffer(image)
        options = pb.StylizeOptions(style=style, strength=strength, preserve_colors=preserve_colors, scale=scale,
                                    refine=refine)
        header = pb.RequestHeader(image=_image_header(buf), stylize=options)
        return back(self._image_call("Stylize", header, [buf], progress, cancel))  # type: ignore[no-any-return]

    def upscale(self, image: ImageT, scale: int, *, model: str | None = None, progress: Progress | None = None,
                cancel: CancelToken | None = None) -> ImageT:
        """Super-resolve by 2, 4 or 8 (`model` None: the default for the scale; "bicubic": resampling)."""
        buf, back = _to_buffer(image)
        header = pb.RequestHeader(image=_image_header(buf), upscale=pb.UpscaleOptions(scale=scale, model=model or ""))
        return back(self._image_call("Upscale", header, [buf], progress, cancel))  # type: ignore[no-any-return]

    def gatys(self, content: ImageT, style: Any, *, iterations: int = 150, content_weight: float | None = None,
              style_weight: float | None = None, init: str = "content", max_size: int = 0,
              progress: Progress | None = None, cancel: CancelToken | None = None) -> ImageT:
        """Optimisation-based transfer from any style image (Gatys, Ecker & Bethge 2016)."""
        buf, back = _to_buffer(content)
        style_buf, _ = _to_buffer(style)
        options = pb.GatysOptions(iterations=iterations, init=init, max_size=max_size)
        if content_weight is not None:
            options.content_weight = content_weight
        if style_weight is not None:
            options.style_weight = style_weight
        header = pb.RequestHeader(image=_image_header(buf), style_image=_image_header(style_buf), gatys=options)
        return back(self._image_call("Gatys", header, [buf, style_buf], progress, cancel))  # type: ignore[no-any-return]

    def echo(self, image: ImageT) -> ImageT:
        """The image back, untouched: measures the transport (and checks the connection)."""
        buf, back = _to_buffer(image)
        header = pb.RequestHeader(image=_image_header(buf))
        return back(self._image_call("Echo", header, [buf], None, None))  # type: ignore[no-any-return]

    def _image_call(self, method: str, header: pb.RequestHeader, images: list[PixelBuffer],
                    progress: Progress | None, cancel: CancelToken | None) -> PixelBuffer:
        call = self._image_methods[method](_requests(header, images), timeout=self.timeout,
                                           metadata=self._metadata)
        done = threading.Event()
        if cancel is not None:
            # A CancelToken cannot wake anyone; a small watcher turns it into a gRPC cancel.
            def watch() -> None:
                while not done.wait(0.05):
                    if cancel.cancelled:
                        call.cancel()
                        return

            threading.Thread(target=watch, name="impasto-cancel-watch", daemon=True).start()
        result: pb.ImageHeader | None = None
        fmt: PixelFormat | None = None
        pixels = wire.Assembler(0)
        try:
            for reply in call:
                if isinstance(reply, wire.RawChunk):
                    pixels.add(reply.data)
                    continue
                item = reply.WhichOneof("item")
                if item == "chunk":
                    pixels.add(reply.chunk)
                elif item == "progress" and progress is not None:
                    progress(reply.progress.stage, reply.progress.fraction)
                elif item == "result":
                    result = reply.result
                    fmt = PixelFormat.parse(result.pixel_format)
                    pixels = wire.Assembler(fmt.buffer_size(result.width, result.height))
        except grpc.RpcError as exc:
            if cancel is not None and cancel.cancelled:
                raise errors.Cancelled("the job was cancelled") from None
            raise _error(exc, self.address) from None
        finally:
            done.set()
        if result is None or fmt is None:
            raise errors.ImpastoError("the server ended the reply without a result image")
        if not pixels.complete:
            raise errors.ImpastoError(f"the server sent {pixels.received} bytes for a {result.width}x"
                                      f"{result.height} {fmt.name} result; expected {len(pixels.buffer)}")
        return PixelBuffer.from_bytes(pixels.buffer, result.width, result.height, fmt)
