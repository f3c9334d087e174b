"""Property-based fuzzing of the server's request decoding (serve/wire.py): whatever bytes, headers and chunks a
client sends, only `impasto.errors` classes come out (a bad request is never INTERNAL), and what is accepted
is exactly what was declared. 1,500 cases in all, each a few milliseconds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from impasto._proto import impasto_pb2 as pb
from impasto.engine.pixels import PixelFormat
from impasto.errors import ImpastoError, InvalidArgument, ResourceExhausted
from impasto.serve import wire

MAX_PIXELS = 4096  # small limits keep every case's buffers tiny
BUDGET = 40_000
FUZZ = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])  # CI-safe: no timing

GOOD_FORMATS = ["RGBA_U8", "RGB_U16", "BGRA_F32", "RGBA_F16_LINEAR", "bgr_u8", " RGB_U8 "]
BAD_FORMATS = ["RGBX_U8", "", "RGBA", "RGBA_U8_LINEAR_LINEAR", "RGBA_U32", "é" * 3, "_", "A_U8"]
OPS = ["stylize", "upscale", "gatys", None]


def mostly(good: st.SearchStrategy, bad: st.SearchStrategy) -> st.SearchStrategy:
    """`good` four times in five: most streams should get far enough to be accepted or nearly so."""
    return st.integers(0, 4).flatmap(lambda i: good if i else bad)


formats = mostly(st.sampled_from(GOOD_FORMATS), st.one_of(st.sampled_from(BAD_FORMATS), st.text(max_size=12)))
dims = mostly(st.integers(1, 40), st.one_of(st.integers(0, 100), st.sampled_from([0, 2**31, 2**32 - 1, 65536])))
floats = st.one_of(st.none(), mostly(st.floats(0, 10, width=32), st.floats(width=32)))
def check_size(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise ResourceExhausted(f"{width}x{height} is over the limit")


@st.composite
def image_headers(draw: st.DrawFn) -> pb.ImageHeader:
    return pb.ImageHeader(pixel_format=draw(formats), width=draw(dims), height=draw(dims))


@st.composite
def headers(draw: st.DrawFn, op: str | None = None) -> pb.RequestHeader:
    """A header, usually with `op`'s options (the stream's own operation), sometimes another's."""
    header = pb.RequestHeader(image=draw(image_headers()))
    if op == "gatys" or draw(st.integers(0, 4)) == 0:
        header.style_image.CopyFrom(draw(image_headers()))
    if draw(st.integers(0, 4)) == 0:
        op = draw(st.sampled_from(OPS))
    if op == "stylize":
        header.stylize.style = draw(st.text(max_size=20))
        for name in ("strength", "scale"):
            if (value := draw(floats)) is not None:
                setattr(header.stylize, name, value)
    elif op == "upscale":
        header.upscale.scale = draw(st.integers(0, 2**32 - 1))
    elif op == "gatys":
        header.gatys.iterations = draw(st.integers(0, 10))
        for name in ("content_weight", "style_weight"):
            if (value := draw(floats)) is not None:
                setattr(header.gatys, name, value)
    return header


def exact_chunks(draw: st.DrawFn, header: pb.RequestHeader, parts: int) -> list[bytes]:
    """Chunks that fill each declared image exactly (when the header is valid), in random pieces."""
    out = []
    for part, spec in enumerate([header.image, header.style_image][:parts]):
        try:
            size = PixelFormat.parse(spec.pixel_format).buffer_size(spec.width, spec.height)
        except InvalidArgument:
            size = draw(st.integers(0, 64))
        size = min(size, BUDGET + 1)
        cuts = sorted(draw(st.lists(st.integers(0, size), max_size=3)))
        for start, end in zip([0, *cuts], [*cuts, size], strict=True):
            if end > start or not size:
                out.append(wire.request_chunk(part, bytes([part + 1]) * (end - start)))
    return out


@st.composite
def streams(draw: st.DrawFn) -> tuple[str | None, list[bytes]]:
    op = draw(st.sampled_from(OPS))
    header = draw(headers(op))
    messages = [pb.ImageRequest(header=header).SerializeToString()]
    if draw(st.integers(0, 4)):
        messages += exact_chunks(draw, header, 2 if op == "gatys" else 1)
    extra = st.one_of(
        st.binary(max_size=40),  # anything at all
        st.builds(wire.request_chunk, st.integers(0, 3), st.binary(max_size=300)),  # chunks of any part/length
        st.builds(lambda h: pb.ImageRequest(header=h).SerializeToString(), headers()),  # a second header
        st.builds(lambda p, d: pb.ImageRequest(chunk=pb.Chunk(part=p, data=d)).SerializeToString(),
                  st.integers(0, 2**32 - 1), st.binary(max_size=50)),
    )
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):
        messages.insert(draw(st.integers(0, len(messages))), draw(extra))
    if draw(st.integers(0, 3)) == 0:  # a flipped byte somewhere
        i = draw(st.integers(0, len(messages) - 1))
        if messages[i]:
            raw = bytearray(messages[i])
            raw[draw(st.integers(0, len(raw) - 1))] ^= draw(st.integers(1, 255))
            messages[i] = bytes(raw)
    return op, messages


@settings(FUZZ, max_examples=600)
@given(st.one_of(st.binary(max_size=200), st.builds(wire.request_chunk, st.integers(0, 2**40), st.binary(max_size=64))))
def test_decode_request_raises_only_invalid_argument(raw: bytes) -> None:
    try:
        decoded = wire.decode_request(raw)
    except InvalidArgument:
        assert isinstance(wire.request_deserializer(raw), wire.Malformed)
        return
    assert isinstance(decoded, pb.ImageRequest | wire.RawChunk)
    if isinstance(decoded, wire.RawChunk):  # the fast path agrees with protobuf
        assert pb.ImageRequest.FromString(raw) == pb.ImageRequest(chunk=pb.Chunk(part=decoded.part,
                                                                                data=bytes(decoded.data)))


@settings(FUZZ, max_examples=900)
@given(streams())
def test_receive_raises_only_domain_errors_and_returns_what_was_declared(case: tuple[str | None, list[bytes]]) -> None:
    op, messages = case
    admitted: list[int] = []

    def admit(nbytes: int) -> None:
        if nbytes > BUDGET:
            raise ResourceExhausted("over the upload budget")
        admitted.append(nbytes)

    decoded = [wire.request_deserializer(m) for m in messages]
    try:
        header, images = wire.receive(decoded, op, check_size=check_size, admit=admit)
    except ImpastoError as exc:
        event(type(exc).__name__)
        assert type(exc) in (InvalidArgument, ResourceExhausted), exc
        assert exc.message and len(exc.message) < 2000
        return
    event("accepted")
    specs = [header.image, header.style_image][: len(images)]
    assert len(images) == (2 if op == "gatys" else 1)
    assert admitted == [sum(im.array.nbytes for im in images)]
    sent: list[bytes] = [b"", b""]
    for m in decoded[1:]:
        chunk = m if isinstance(m, wire.RawChunk) else m.chunk  # type: ignore[union-attr]
        sent[chunk.part] += bytes(chunk.data)
    for part, (spec, image) in enumerate(zip(specs, images, strict=True)):
        assert (image.width, image.height) == (spec.width, spec.height) and image.width * image.height <= MAX_PIXELS
        assert image.format == PixelFormat.parse(spec.pixel_format)
        assert np.ascontiguousarray(image.array).tobytes() == sent[part]  # exactly this part's bytes, in order


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_receive_refuses_non_finite_options_before_any_pixel(value: float) -> None:
    header = pb.RequestHeader(image=pb.ImageHeader(pixel_format="RGB_U8", width=1, height=1),
                              style_image=pb.ImageHeader(pixel_format="RGB_U8", width=1, height=1),
                              gatys=pb.GatysOptions(style_weight=value))
    admitted: list[int] = []
    with pytest.raises(InvalidArgument, match="gatys.style_weight must be a finite number"):
        wire.receive([pb.ImageRequest(header=header)], "gatys", check_size=check_size, admit=admitted.append)
    assert admitted == []
