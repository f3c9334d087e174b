"""Fast (de)serialisation of the image streams' chunk messages, shared by server.py and client.py.

A 4096x4096 RGBA layer is 64 MiB each way. Through the generated classes every chunk is copied five times
per direction (slice to bytes, message, serialised string, parsed message, `.data` access), then once more
to join the chunks, which misses the 0.25 s round-trip target on a small machine. Chunk messages have a
fixed, tiny shape, so we write their protobuf wire format directly from a view of the pixels (one copy)
and read them as views of the received bytes, copied once into the image buffer. Everything that is not a
plain chunk (headers, progress, errors) still goes through the generated classes. The bytes on the wire
are ordinary protobuf: other clients (the plugins' grpclib client, grpcurl) need not know about this.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from google.protobuf.message import DecodeError

from impasto._proto import impasto_pb2 as pb

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


def decode_request(raw: bytes) -> pb.ImageRequest | RawChunk:
    """gRPC deserializer for ImageRequest: a RawChunk for a plain chunk message, else the parsed message."""
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
            return RawChunk(part, data)
    except DecodeError:
        pass  # let the generated parser accept it or explain what is wrong
    return pb.ImageRequest.FromString(raw)


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
