"""A bug in the engine becomes INTERNAL with the traceback in the server log, and the server carries on; an
ordinary cancel is no error; image streams are bounded in number, bytes and idle time.
(A real grpcio server in this process; the engine is a stand-in that fails on purpose.)"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from impasto import errors
from impasto._proto import impasto_pb2 as pb
from impasto.serve import wire
from impasto.serve.client import Client
from impasto.serve.server import ImpastoServer, ServerConfig


class BrokenEngine:
    device = SimpleNamespace(type="cpu")
    device_name = "cpu (test)"
    config = SimpleNamespace(max_pixels=10_000)

    def models(self, kind: str | None = None) -> list[object]:
        return []

    def operations(self) -> list[str]:
        return ["stylize"]

    def check_size(self, width: int, height: int) -> None:
        if width * height > self.config.max_pixels:
            raise errors.ResourceExhausted("too big")

    def stylize(self, image: object, style: str, **options: object) -> object:
        return 1 / 0  # the bug


@pytest.fixture()
def server() -> Iterator[ImpastoServer]:
    srv = ImpastoServer(BrokenEngine(), ServerConfig(address="127.0.0.1:0", grace=0.5))  # type: ignore[arg-type]
    srv.start()
    yield srv
    srv.stop()


def test_bug_becomes_internal_and_is_logged(server: ImpastoServer, caplog: pytest.LogCaptureFixture) -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    with caplog.at_level(logging.ERROR, logger="impasto.serve.server"), Client(server.address) as client:
        with pytest.raises(errors.ImpastoError, match="internal error in Stylize: ZeroDivisionError") as info:
            client.stylize(image, "any")
        assert type(info.value) is errors.ImpastoError  # not one of the domain errors
        np.testing.assert_array_equal(client.echo(image), image)  # still serving
        assert client.info().device == "cpu (test)"
    record = next(r for r in caplog.records if "unexpected error in Stylize" in r.getMessage())
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError


def stalled_stream(address: str, nbytes: int, release: threading.Event, method: str = "Echo",
                   width: int = 64, height: int = 64) -> grpc.Future:
    """An Echo call that sends its header and `nbytes` of pixels, then stalls until `release` is set."""
    channel = grpc.insecure_channel(address)

    def requests() -> Iterator[bytes]:
        header = pb.RequestHeader(image=pb.ImageHeader(pixel_format="RGBA_U8", width=width, height=height))
        yield pb.ImageRequest(header=header).SerializeToString()
        sent = 0
        while sent < nbytes:
            chunk = min(1 << 20, nbytes - sent)
            yield wire.request_chunk(0, bytes(chunk))
            sent += chunk
        release.wait(60)

    call = channel.stream_stream(f"/impasto.v1.Impasto/{method}")(requests(), timeout=60)
    call.add_done_callback(lambda _: channel.close())
    return call


def test_client_cancel_mid_upload_is_no_error(server: ImpastoServer, caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    with caplog.at_level(logging.INFO, logger="impasto.serve"):
        call = stalled_stream(server.address, 1000, release)
        wait_until(lambda: server.gate.reserved == 64 * 64 * 4)  # the header was admitted
        call.cancel()
        wait_until(lambda: server.gate.streams == 0)
        release.set()
        # The slot goes back from gRPC's cancel callback; the handler's thread ends just after, one of two ways:
        # the request stream raises (logged as a cancel), or it just ends (1 run in 30 here idle, up to 1 in 3
        # with both cores busy) and the short upload is refused like any incomplete image, to a client that is
        # gone. Neither is a warning.
        wait_until(lambda: "the client cancelled or went away" in caplog.text
                   or "Echo refused (INVALID_ARGUMENT): pixel buffer has " in caplog.text)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert not [r for r in caplog.records if r.exc_info], caplog.text  # no traceback for an ordinary cancel
    with Client(server.address) as client:
        assert client.info().device == "cpu (test)"


def test_streams_over_the_limit_are_refused_and_info_still_answers() -> None:
    srv = ImpastoServer(BrokenEngine(), ServerConfig(  # type: ignore[arg-type]
        address="127.0.0.1:0", grace=0.5, max_queue=1, max_streams=2, upload_budget=40_000, idle_timeout=1.0))
    srv.start()
    release = threading.Event()
    try:
        held = [stalled_stream(srv.address, 100, release) for _ in range(2)]
        wait_until(lambda: srv.gate.streams == 2)
        extra = [stalled_stream(srv.address, 0, release) for _ in range(12)]  # more than the server's threads
        for call in extra:
            with pytest.raises(grpc.RpcError) as info:
                call.result(timeout=10)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "--max-streams" in info.value.details()
        with Client(srv.address, timeout=5) as client:
            assert client.info().max_queue == 1 and client.models() == []
        with grpc.insecure_channel(srv.address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        # The two stalled streams are closed by the idle timeout, which frees their slots and bytes.
        for call in held:
            with pytest.raises(grpc.RpcError) as info:
                call.result(timeout=10)
            assert info.value.code() == grpc.StatusCode.CANCELLED
        # the client hears of the cancel before the handler's thread has given its slot back: soon after
        wait_until(lambda: (srv.gate.streams, srv.gate.reserved) == (0, 0))
        image = np.zeros((64, 64, 4), np.uint8)
        with Client(srv.address) as client:
            np.testing.assert_array_equal(client.echo(image), image)
    finally:
        release.set()
        srv.stop()


def test_upload_budget_is_checked_from_the_header() -> None:
    srv = ImpastoServer(BrokenEngine(), ServerConfig(  # type: ignore[arg-type]
        address="127.0.0.1:0", grace=0.5, upload_budget=20_000, idle_timeout=5.0))
    srv.start()
    release = threading.Event()
    try:
        # Too big for the budget on its own: refused from the header, before any pixel is sent.
        with Client(srv.address) as client, pytest.raises(errors.ResourceExhausted, match="upload budget"):
            client.echo(np.zeros((80, 80, 4), np.uint8))
        held = stalled_stream(srv.address, 0, release)  # 64x64 RGBA: 16,384 of the 20,000 bytes
        wait_until(lambda: srv.gate.reserved == 16_384)
        with Client(srv.address) as client:
            with pytest.raises(errors.ResourceExhausted, match="hold .* of the .* upload budget"):
                client.echo(np.zeros((40, 40, 4), np.uint8))
            held.cancel()
            wait_until(lambda: srv.gate.reserved == 0)
            image = np.ones((40, 40, 4), np.uint8)
            np.testing.assert_array_equal(client.echo(image), image)
    finally:
        release.set()
        srv.stop()


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_list_models_fits_a_default_client_limit_however_many_big_thumbnails() -> None:
    """Thirty user models with the largest thumbnail a model may carry still list in one 4 MiB answer."""
    from impasto._proto import impasto_pb2 as pb
    from impasto.models.info import ModelInfo
    from impasto.serve.server import models_to_pb

    big = b"\x89PNG" + bytes(256 << 10)
    models = [ModelInfo(name=f"user-{i:02d}", kind="style", arch="johnson", thumbnail_png=big) for i in range(30)]
    models.insert(7, ModelInfo(name="bundled-one", kind="style", arch="johnson", thumbnail_png=big, bundled=True))
    answer = pb.ListModelsResponse(models=models_to_pb(models))
    assert answer.ByteSize() < 4 << 20
    assert [m.name for m in answer.models] == [m.name for m in models]  # every model, in the store's order
    assert answer.models[7].thumbnail_png == big  # bundled thumbnails come first
    assert sum(bool(m.thumbnail_png) for m in answer.models) >= 10
