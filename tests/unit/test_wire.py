"""wire.py's hand-written chunk codec must agree with the generated protobuf classes byte for byte."""

from __future__ import annotations

import pytest
from impasto._proto import impasto_pb2 as pb
from impasto.errors import InvalidArgument
from impasto.serve import wire


@pytest.mark.parametrize("part", [0, 1, 300])
@pytest.mark.parametrize("size", [0, 1, 127, 128, 70_000])
def test_request_chunk_is_what_protobuf_writes(part: int, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    ours = wire.request_chunk(part, memoryview(data))
    assert ours == pb.ImageRequest(chunk=pb.Chunk(part=part, data=data)).SerializeToString()
    decoded = wire.decode_request(ours)
    assert isinstance(decoded, wire.RawChunk) and decoded.part == part and bytes(decoded.data) == data


def test_response_chunk_is_what_protobuf_writes() -> None:
    data = b"\x00\xff" * 1000
    ours = wire.response_chunk(memoryview(data))
    assert ours == pb.ImageResponse(chunk=data).SerializeToString()
    decoded = wire.decode_response(ours)
    assert isinstance(decoded, wire.RawChunk) and bytes(decoded.data) == data


def test_other_messages_go_through_the_generated_classes() -> None:
    header = pb.ImageRequest(header=pb.RequestHeader(image=pb.ImageHeader(pixel_format="RGBA_U8", width=3)))
    assert wire.decode_request(header.SerializeToString()) == header
    progress = pb.ImageResponse(progress=pb.Progress(stage="queued", queue_position=2))
    assert wire.decode_response(progress.SerializeToString()) == progress
    assert wire.serialize(progress) == progress.SerializeToString() and wire.serialize(b"xy") == b"xy"


def test_malformed_bytes_are_invalid_argument_never_internal() -> None:
    # The fast path leaves bytes it cannot read to the generated parser, whose failure is the client's error
    # (a deserializer that raises would make gRPC answer INTERNAL).
    for raw in (b"\x12\x05\x12\x09abc", b"\xff\xff\xff", b"not protobuf at all"):
        with pytest.raises(InvalidArgument, match="not a valid ImageRequest"):
            wire.decode_request(raw)
        malformed = wire.request_deserializer(raw)
        assert isinstance(malformed, wire.Malformed) and isinstance(malformed.error, InvalidArgument)
    assert isinstance(wire.lenient(pb.ListModelsRequest)(b"\xff"), wire.Malformed)
    assert wire.lenient(pb.ListModelsRequest)(b"") == pb.ListModelsRequest()


def test_non_finite_options_are_refused() -> None:
    for options in (pb.GatysOptions(content_weight=float("nan")), pb.GatysOptions(style_weight=float("inf")),
                    pb.StylizeOptions(style="wave", strength=float("-inf"))):
        header = pb.RequestHeader(image=pb.ImageHeader(pixel_format="RGB_U8", width=1, height=1))
        getattr(header, options.DESCRIPTOR.name.removesuffix("Options").lower()).CopyFrom(options)
        with pytest.raises(InvalidArgument, match="must be a finite number"):
            wire.check_numbers(header)
    wire.check_numbers(pb.RequestHeader(gatys=pb.GatysOptions(content_weight=1e30, style_weight=0.0)))


def test_assembler_counts_past_the_expected_size() -> None:
    a = wire.Assembler(4)
    a.add(b"ab")
    a.add(memoryview(b"cd"))
    assert a.complete and bytes(a.buffer) == b"abcd"
    a.add(b"e")
    assert not a.complete and a.received == 5 and bytes(a.buffer) == b"abcd"
