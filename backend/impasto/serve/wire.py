"""Fast (de)serialisation of the image streams' chunk messages, shared by server.py and client.py.

A 4096x4096 RGBA layer is 64 MiB each way. Through the generated classes every chunk is copied five times
per direction (slice to bytes, message, serialised string, parsed message, `.data` access), then once more
to join the chunks, which misses the 0.25 s round-trip target on a small machine. Chunk messages have a
fixed, tiny shape, so we write their protobuf wire format directly from a view of the pixels (one copy)
and read them as views of the received bytes, copied once into the image buffer. Everything that is not a
plain chunk (headers, progress, errors) still goes through the generated classes. The bytes on the wire
are ordinary protobuf: other clients (the plugins' grpclib client, grpcurl) need not know about this.

`receive` turns a request stream into images, checking everything the header says (options, formats,
sizes, the upload budget) before the first pixel is read. Bytes from a client never raise anything but
`impasto.errors` classes here (tests/unit/test_wire_fuzz.py), so a bad request is never INTERNAL.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import NamedTuple, TypeVar

import numpy as np
from google.protobuf.message import DecodeError, Message

from impasto._proto import impasto_pb2 as pb
from impasto.engine.pixels import PixelBuffer, PixelFormat
from impasto.errors import InvalidArgument

M = TypeVar("M", bound=Message)

# Field keys, (field_number << 3) | wire_type; wire type 2 is length-delimited, 0 is varint.
_REQUEST_CHUNK = 2 << 3 | 2  # ImageRequest.chunk
_CHUNK_PART = 1 << 3 | 0  # Chunk.part
_CHUNK_DATA = 2 << 3 | 2  # Chunk.data
_RESPONSE_CHUNK = 3 << 3 | 2  # ImageResponse.chunk


class RawChunk(NamedTuple):
    """A chunk message read without copying: `data` is a view into the received message."""

    part: int
    data: memoryview


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise DecodeError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview) -> list[tuple[int, int | memoryview]]:
    """(key, value) for each top-level field: ints for varints, views for length-delimited fields.
    Raises DecodeError on other wire types, which our chunk messages never use."""
    fields: list[tuple[int, int | memoryview]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        if key & 7 == 0:
            value, pos = _read_varint(buf, pos)
            fields.append((key, value))
        elif key & 7 == 2:
            size, pos = _read_varint(buf, pos)
            if pos + size > len(buf):
                raise DecodeError("truncated field")
            fields.append((key, buf[pos:pos + size]))
            pos += size
        else:
            raise DecodeError("unexpected wire type")
    return fields


def request_chunk(part: int, data: memoryview | bytes) -> bytes:
    """The serialised ImageRequest{chunk: Chunk{part, data}}."""
    # proto3 leaves out fields at their default (part 0, empty data); so do we, to stay byte-identical.
    inner = (bytes([_CHUNK_PART]) + _varint(part) if part else b"") + (
        bytes([_CHUNK_DATA]) + _varint(len(data)) if len(data) else b"")
    return b"".join((bytes([_REQUEST_CHUNK]), _varint(len(inner) + len(data)), inner, data))


def response_chunk(data: memoryview | bytes) -> bytes:
    """The serialised ImageResponse{chunk: data}."""
    return b"".join((bytes([_RESPONSE_CHUNK]), _varint(len(data)), data))


def serialize(message: pb.ImageRequest | pb.ImageResponse | bytes) -> bytes:
    """gRPC serializer for both streams: chunks arrive already serialised."""
    return message if isinstance(message, bytes) else message.SerializeToString()


class Malformed(NamedTuple):
    """What the lenient deserializers hand the handler for bytes that are not the expected message: gRPC
    answers an exception raised in a deserializer with INTERNAL, so the handler raises `error` instead."""

    error: InvalidArgument


def decode_request(raw: bytes) -> pb.ImageRequest | RawChunk:
    """An ImageRequest: a RawChunk for a plain chunk message, else the parsed message. Raises InvalidArgument
    (and nothing else) for bytes that are not an ImageRequest."""
    try:
        fields = _fields(memoryview(raw))
        if len(fields) == 1 and fields[0][0] == _REQUEST_CHUNK:
            inner = fields[0][1]
            assert isinstance(inner, memoryview)
            part, data = 0, memoryview(b"")
            for key, value in _fields(inner):
                if key == _CHUNK_PART and isinstance(value, int):
                    part = value
                elif key == _CHUNK_DATA and isinstance(value, memoryview):
                    data = value
                else:
                    raise DecodeError("unexpected chunk field")
            if part <= 0xFFFFFFFF:  # uint32 on the wire; a larger varint is the generated parser's to judge
                return RawChunk(part, data)
    except DecodeError:
        pass  # let the generated parser accept it or explain what is wrong
    return parse(pb.ImageRequest, raw)


def parse(cls: type[M], raw: bytes) -> M:
    """`cls.FromString(raw)`, raising InvalidArgument for bytes that are not such a message."""
    try:
        return cls.FromString(raw)
    # Any failure of the parser on bytes a client chose means the bytes are wrong (DecodeError is the usual one).
    except Exception as exc:
        raise InvalidArgument(f"the request is not a valid {cls.DESCRIPTOR.name} message ({_reason(exc)})",
                              hint="send protobuf messages of impasto.v1 (proto/impasto/v1/impasto.proto)") from None


def _reason(exc: Exception) -> str:
    text = (str(exc) or type(exc).__name__).removeprefix("Error parsing message").strip()
    text = text.split("': ", 1)[-1] if text.startswith("with type '") else text
    return text if len(text) <= 80 else text[:77] + "..."


def request_deserializer(raw: bytes) -> pb.ImageRequest | RawChunk | Malformed:
    """gRPC deserializer for ImageRequest that never raises (see Malformed)."""
    try:
        return decode_request(raw)
    except InvalidArgument as exc:
        return Malformed(exc)


def lenient(cls: type[M]) -> Callable[[bytes], M | Malformed]:
    """A gRPC deserializer for `cls` that never raises (see Malformed)."""

    def deserialize(raw: bytes) -> M | Malformed:
        try:
            return parse(cls, raw)
        except InvalidArgument as exc:
            return Malformed(exc)

    return deserialize


def decode_response(raw: bytes) -> pb.ImageResponse | RawChunk:
    """gRPC deserializer for ImageResponse: a RawChunk (part 0) for a plain chunk, else the parsed message."""
    try:
        fields = _fields(memoryview(raw))
        if len(fields) == 1 and fields[0][0] == _RESPONSE_CHUNK and isinstance(fields[0][1], memoryview):
            return RawChunk(0, fields[0][1])
    except DecodeError:
        pass
    return pb.ImageResponse.FromString(raw)


class Assembler:
    """Collects one image's chunks straight into a buffer of the expected size, counting (but not keeping)
    any bytes beyond it so a wrong length can be reported with both numbers."""

    def __init__(self, expected: int) -> None:
        # np.empty, not bytearray(n): zero-filling 64 MiB costs as much as copying it in.
        self._array = np.empty(expected, dtype=np.uint8)
        self.buffer = self._array.data
        self.received = 0

    def add(self, data: memoryview | bytes) -> None:
        end = self.received + len(data)
        if end <= len(self.buffer):
            self.buffer[self.received:end] = data
        self.received = end

    @property
    def complete(self) -> bool:
        return self.received == len(self.buffer)


# ---- a whole request stream: header, admission, chunks ----

Requests = Iterable[pb.ImageRequest | RawChunk | Malformed]


def check_numbers(message: Message, path: str = "") -> None:
    """Every float option in `message` (recursively) must be finite: NaN or infinity would sail through the
    range checks that compare against it and come back as a black image."""
    for field, value in message.ListFields():
        name = f"{path}{field.name}"
        repeated = field.is_repeated if hasattr(field, "is_repeated") else getattr(field, "label", 0) == 3  # older pb
        values = list(value) if repeated else [value]
        if field.type == field.TYPE_MESSAGE:
            for item in values:
                check_numbers(item, f"{name}.")
        elif field.type in (field.TYPE_FLOAT, field.TYPE_DOUBLE):
            for number in values:
                if not math.isfinite(number):
                    raise InvalidArgument(f"{name} must be a finite number, got {number}")


def receive(requests: Requests, op: str | None, *, check_size: Callable[[int, int], None],
            admit: Callable[[int], None] = lambda nbytes: None,
            before_pixels: Callable[[], None] = lambda: None) -> tuple[pb.RequestHeader, list[PixelBuffer]]:
    """The header, then the image(s) reassembled from chunks. Everything the header says is checked before a
    pixel is read: the options (`op`: their name in the header, None for Echo), the formats, `check_size(w, h)`
    for each image, `before_pixels()` (e.g. the queue is open), and `admit(nbytes)` for the images' buffers.
    Raises only impasto.errors classes for anything a client can send."""
    stream = iter(requests)
    first = next(stream, None)
    if isinstance(first, Malformed):
        raise first.error
    if not isinstance(first, pb.ImageRequest) or first.WhichOneof("item") != "header":
        raise InvalidArgument("the request stream must start with a header")
    header = first.header
    if op is not None and header.WhichOneof("options") != op:
        raise InvalidArgument(f"a {op} request needs {op} options in its header")
    check_numbers(header)
    specs = [header.image] + ([header.style_image] if op == "gatys" else [])
    formats = [PixelFormat.parse(spec.pixel_format) for spec in specs]
    for spec in specs:
        if spec.width < 1 or spec.height < 1:
            raise InvalidArgument(f"image size must be positive, got {spec.width}x{spec.height}")
        check_size(spec.width, spec.height)  # before megabytes arrive
    before_pixels()
    sizes = [fmt.buffer_size(spec.width, spec.height) for fmt, spec in zip(formats, specs, strict=True)]
    admit(sum(sizes))
    assemblers = [Assembler(size) for size in sizes]
    data: memoryview | bytes
    for msg in stream:
        if isinstance(msg, Malformed):
            raise msg.error
        if isinstance(msg, RawChunk):
            part, data = msg.part, msg.data
        elif msg.WhichOneof("item") == "chunk":
            part, data = msg.chunk.part, msg.chunk.data
        else:
            raise InvalidArgument("only chunks may follow the header")
        if part >= len(specs):
            raise InvalidArgument(f"chunk for image part {part}, but this request has {len(specs)} part(s)")
        assemblers[part].add(data)
        if assemblers[part].received > sizes[part]:  # refuse at once: the rest would only be counted
            raise _length_error(specs[part], formats[part], assemblers[part], " so far")
    images = []
    for spec, fmt, assembler in zip(specs, formats, assemblers, strict=True):
        if not assembler.complete:
            raise _length_error(spec, fmt, assembler, "")
        images.append(PixelBuffer.from_bytes(assembler.buffer, spec.width, spec.height, fmt))
    return header, images


def _length_error(spec: pb.ImageHeader, fmt: PixelFormat, assembler: Assembler, when: str) -> InvalidArgument:
    return InvalidArgument(
        f"pixel buffer has {assembler.received} bytes{when} but {spec.width}x{spec.height} {fmt.name} needs "
        f"{len(assembler.buffer)} ({spec.width} x {spec.height} x {fmt.channels} channels x "
        f"{fmt.bytes_per_channel} bytes)"
    )
