"""Every bad input gets its status and a message a user can act on, and none of them hurts the server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from impasto import errors
from impasto._proto import impasto_pb2 as pb
from impasto._proto import impasto_pb2_grpc as pb_grpc
from impasto.serve.client import Client
from impasto_serve_proc import ROOT, ServeProcess, child_env, make_image


@pytest.fixture(scope="module")
def server() -> Iterator[ServeProcess]:
    with ServeProcess("--max-pixels", "20000") as proc:
        yield proc


@pytest.fixture(scope="module")
def client(server: ServeProcess) -> Iterator[Client]:
    with Client(server.address) as c:
        yield c


@pytest.fixture(scope="module")
def stub(server: ServeProcess) -> Iterator[pb_grpc.ImpastoStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.ImpastoStub(channel)


def raw_stylize(stub: pb_grpc.ImpastoStub, fmt: str, w: int, h: int, data: bytes,
                style: str = "udnie") -> grpc.RpcError:
    """Send a hand-made request (the clients would refuse to build these) and return the error."""
    header = pb.RequestHeader(image=pb.ImageHeader(pixel_format=fmt, width=w, height=h),
                              stylize=pb.StylizeOptions(style=style))
    requests = [pb.ImageRequest(header=header), pb.ImageRequest(chunk=pb.Chunk(data=data))]
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Stylize(iter(requests)))
    return info.value


@pytest.mark.parametrize("size", [399, 401])
def test_wrong_buffer_length_names_both_numbers(stub: pb_grpc.ImpastoStub, size: int) -> None:
    err = raw_stylize(stub, "RGBA_U8", 10, 10, bytes(size))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"has {size} bytes" in err.details() and "needs 400" in err.details()


def test_unknown_pixel_format(stub: pb_grpc.ImpastoStub) -> None:
    err = raw_stylize(stub, "RGBX_U8", 10, 10, bytes(400))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown pixel format 'RGBX_U8'" in err.details()


def test_image_over_the_limit_is_refused_before_its_pixels(stub: pb_grpc.ImpastoStub) -> None:
    err = raw_stylize(stub, "RGBA_U8", 201, 100, b"")  # no pixels needed: the header alone is refused
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "20,000" in err.details() or "20000" in err.details()


def test_empty_image(stub: pb_grpc.ImpastoStub) -> None:
    err = raw_stylize(stub, "RGB_U8", 0, 10, b"")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "positive" in err.details()


def test_request_without_header(stub: pb_grpc.ImpastoStub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Upscale(iter([pb.ImageRequest(chunk=pb.Chunk(data=b"1234"))])))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "header" in info.value.details()


def test_options_of_another_operation(stub: pb_grpc.ImpastoStub) -> None:
    header = pb.RequestHeader(image=pb.ImageHeader(pixel_format="RGB_U8", width=1, height=1),
                              stylize=pb.StylizeOptions(style="udnie"))
    requests = [pb.ImageRequest(header=header), pb.ImageRequest(chunk=pb.Chunk(data=b"123"))]
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Upscale(iter(requests)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "upscale options" in info.value.details()


@pytest.mark.parametrize(("call", "text"), [
    (lambda c, im: c.stylize(im, "udnie", strength=1.5), "strength"),
    (lambda c, im: c.stylize(im, "udnie", scale=9.0), "scale"),
    (lambda c, im: c.upscale(im, 3), "scale"),
])
def test_option_out_of_range(client: Client, call, text: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(errors.InvalidArgument, match=text):
        call(client, make_image(8, 8, "uint8"))


def test_unknown_model_lists_the_available_ones(client: Client) -> None:
    with pytest.raises(errors.NotFound) as info:
        client.stylize(make_image(8, 8, "uint8"), "mona-lisa")
    assert "mona-lisa" in str(info.value) and "udnie" in str(info.value) and "wave" in str(info.value)
    with pytest.raises(errors.NotFound, match="srgan-x2"):
        client.upscale(make_image(8, 8, "uint8"), 2, model="esrgan")


def test_echoed_input_is_capped(client: Client, stub: pb_grpc.ImpastoStub) -> None:
    # A 16 KB name once came back whole, past the 8 KiB a client takes in a trailer ("metadata size exceeds").
    name = "x" * 16384
    with pytest.raises(errors.NotFound) as info:
        client.stylize(make_image(8, 8, "uint8"), name)
    details = str(info.value)
    assert "unknown style 'xxxx" in details and "cut" in details and len(details.encode()) < 1200
    assert "udnie" in details  # the end of the message (the available styles) is kept
    err = raw_stylize(stub, "RGBA_" + "é" * 6000, 2, 2, bytes(16))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and len(err.details().encode()) < 1200


def test_bytes_that_are_not_protobuf_are_invalid_argument(server: ServeProcess) -> None:
    with grpc.insecure_channel(server.address) as channel:
        for method in ("ListModels", "GetServerInfo"):
            call = channel.unary_unary(f"/impasto.v1.Impasto/{method}")  # raw bytes in and out
            with pytest.raises(grpc.RpcError) as info:
                call(b"\xff\xff\xff", timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
            assert "not a valid" in info.value.details()
        stream = channel.stream_stream("/impasto.v1.Impasto/Stylize")
        for garbage in ([b"\x0a\xff\xff"], [pb.ImageRequest(header=pb.RequestHeader(
                image=pb.ImageHeader(pixel_format="RGB_U8", width=1, height=1),
                stylize=pb.StylizeOptions(style="udnie"))).SerializeToString(), b"\x12\x05\x12\x09abc"]):
            with pytest.raises(grpc.RpcError) as info:
                list(stream(iter(garbage), timeout=10))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value


@pytest.mark.parametrize("weights", [{"content_weight": float("nan")}, {"style_weight": float("inf")},
                                     {"style_weight": -1.0}])
def test_gatys_weights_must_be_finite(client: Client, weights: dict[str, float]) -> None:
    image = make_image(8, 8, "uint8")
    with pytest.raises(errors.InvalidArgument, match="finite"):
        client.gatys(image, image, iterations=1, **weights)


def test_client_rejects_what_it_cannot_send(client: Client) -> None:
    with pytest.raises(errors.InvalidArgument, match="dtype"):
        client.stylize(np.zeros((4, 4, 3), np.int32), "udnie")


def test_server_still_works_after_all_that(client: Client) -> None:
    image = make_image(8, 8, "uint16")
    np.testing.assert_array_equal(client.echo(image), image)
    assert client.info().queue_length == 0


def test_no_backend_running() -> None:
    with Client("127.0.0.1:1") as c, pytest.raises(errors.Unavailable, match="impasto serve"):
        c.info()


def test_reflection_lists_the_service(server: ServeProcess) -> None:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with grpc.insecure_channel(server.address) as channel:
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert "impasto.v1.Impasto" in services and "grpc.health.v1.Health" in services


def test_taken_port_fails_with_one_clear_line(server: ServeProcess) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "impasto", "serve", "--address", server.address, "--device", "cpu"],
        capture_output=True, text=True, env=child_env(), cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == f"impasto: error: cannot listen on {server.address}: " \
                                          "the port is already in use"
    assert "serving on" not in proc.stdout
