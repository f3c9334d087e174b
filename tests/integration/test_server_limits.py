"""A real `impasto serve` under upload abuse: stalled and cancelled large uploads give their memory back,
stalled streams cannot starve health / ListModels / GetServerInfo, and idle streams are closed."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from impasto import errors
from impasto._proto import impasto_pb2 as pb
from impasto.cancel import CancelToken
from impasto.serve import wire
from impasto.serve.client import Client
from impasto_serve_proc import Background, RefineTimes, ServeProcess, make_image, wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the server's memory from /proc")

MB = 1 << 20
ZEROS = bytes(MB)


def rss(pid: int) -> int:
    """Resident memory of a process, bytes."""
    with open(f"/proc/{pid}/status") as f:
        line = next(line for line in f if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


class Upload:
    """A Stylize call that sends a header for a `width` x `height` RGBA_U8 image and `send` bytes of it, then
    stalls (as a client that hung or went quiet would) until cancelled."""

    def __init__(self, channel: grpc.Channel, width: int, height: int, send: int) -> None:
        self.sent = 0
        self._release = threading.Event()
        header = pb.RequestHeader(image=pb.ImageHeader(pixel_format="RGBA_U8", width=width, height=height),
                                  stylize=pb.StylizeOptions(style="udnie"))

        def requests() -> Iterator[bytes]:
            yield pb.ImageRequest(header=header).SerializeToString()
            while self.sent < send:
                yield wire.request_chunk(0, ZEROS[: min(MB, send - self.sent)])
                self.sent += min(MB, send - self.sent)
            self._release.wait(120)

        self.call = channel.stream_stream("/impasto.v1.Impasto/Stylize")(requests(), timeout=120)

    def cancel(self) -> None:
        self.call.cancel()
        self._release.set()

    def error(self, timeout: float = 10) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as info:
            self.call.result(timeout=timeout)
        return info.value


def test_memory_returns_after_stalled_and_cancelled_large_uploads() -> None:
    with ServeProcess() as server, grpc.insecure_channel(server.address) as channel:
        pid = server.proc.pid
        with Client(server.address) as client:  # warm the transport up once, as any first call would
            image = make_image(64, 64, "uint8")
            np.testing.assert_array_equal(client.echo(image), image)
        time.sleep(1.0)
        base = rss(pid)
        rounds, size = 2, 96 * MB  # 4096 x 6144 RGBA_U8
        for _ in range(rounds):
            uploads = [Upload(channel, 4096, 6144, size - 8 * MB) for _ in range(6)]
            wait_for(lambda: all(u.sent >= size - 8 * MB for u in uploads), 120)  # noqa: B023
            wait_for(lambda: rss(pid) > base + 6 * 64 * MB, 60)  # the server holds what arrived
            peak = rss(pid)
            for u in uploads:
                u.cancel()
        try:
            wait_for(lambda: rss(pid) < base + 100 * MB, 20)
        finally:
            print(f"server RSS: {base / MB:.0f} MB before, {peak / MB:.0f} MB with 6 stalled 88 MB uploads, "
                  f"{rss(pid) / MB:.0f} MB after {rounds} rounds of cancels")
        with Client(server.address) as client:
            assert client.info().queue_length == 0


def test_memory_returns_after_queued_large_jobs_are_cancelled() -> None:
    with ServeProcess() as server, grpc.insecure_channel(server.address) as channel, Client(server.address) as client:
        pid = server.proc.pid
        image = make_image(64, 64, "uint8")
        np.testing.assert_array_equal(client.echo(image), image)
        times, token = RefineTimes(), CancelToken()
        blocker = Background(lambda: client.stylize(make_image(96, 128, "uint8"), "udnie", refine=1000,
                                                    progress=times, cancel=token))
        try:
            assert times.refining.wait(120)
            time.sleep(1.0)
            base = rss(pid)
            header = pb.RequestHeader(image=pb.ImageHeader(pixel_format="RGBA_U8", width=4096, height=4096),
                                      upscale=pb.UpscaleOptions(scale=2, model="bicubic"))
            chunks = [wire.request_chunk(0, ZEROS)] * 64  # all of a 64 MiB image: these jobs get queued
            calls = [channel.stream_stream("/impasto.v1.Impasto/Upscale")(
                iter([pb.ImageRequest(header=header).SerializeToString(), *chunks]), timeout=120) for _ in range(4)]
            for call in calls:
                first = pb.ImageResponse.FromString(next(call))
                assert first.progress.stage == "queued"
            peak = rss(pid)
            assert peak > base + 4 * 48 * MB
            for call in calls:
                call.cancel()
            # Their handlers end now, not when the running job finishes (minutes away), and free the images.
            # (Nothing else may call the server meanwhile: GetServerInfo would drop the cancelled jobs itself.)
            try:
                wait_for(lambda: rss(pid) < base + 100 * MB, 20)
            finally:
                print(f"server RSS: {base / MB:.0f} MB before, {peak / MB:.0f} MB with 4 queued 64 MiB jobs, "
                      f"{rss(pid) / MB:.0f} MB after their cancel")
            assert client.info().queue_length == 1
        finally:
            token.cancel()
            blocker.join()


@pytest.fixture(scope="module")
def guarded() -> Iterator[ServeProcess]:
    with ServeProcess("--max-queue", "2", "--max-streams", "4", "--idle-timeout", "2",
                      "--upload-budget", "0.0625") as proc:
        yield proc


def test_stalled_streams_cannot_starve_the_small_calls(guarded: ServeProcess) -> None:
    with grpc.insecure_channel(guarded.address) as channel:
        stalled = [Upload(channel, 64, 64, 0) for _ in range(30)]  # headers only: more than the server's threads
        try:
            # Which four the server admits depends on the order the streams reach it (not always the order
            # they were opened, on a loaded machine): 26 are refused from their headers, the other 4 stall.
            def refused() -> list[Upload]:
                return [u for u in stalled if u.call.done() and u.error().code() == grpc.StatusCode.RESOURCE_EXHAUSTED]

            wait_for(lambda: len(refused()) >= 26, 15)
            gone = refused()
            assert len(gone) == 26 and "--max-streams" in gone[0].error().details()
            admitted = [u for u in stalled if u not in gone]
            start = time.monotonic()
            with Client(guarded.address, timeout=5) as client:
                assert client.info().max_queue == 2
                assert {m.name for m in client.models("style")} >= {"udnie", "wave"}
                with pytest.raises(errors.ResourceExhausted, match="image streams are open"):
                    client.stylize(make_image(8, 8, "uint8"), "wave")
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            assert time.monotonic() - start < 5
            # The idle timeout closes the four stalled streams; their slots serve new calls again.
            for u in admitted:
                assert u.error(timeout=15).code() == grpc.StatusCode.CANCELLED
        finally:
            for u in stalled:
                u.cancel()
    with Client(guarded.address) as client:
        image = make_image(8, 8, "uint8")
        assert client.stylize(image, "wave").shape == image.shape


def test_an_upload_over_the_budget_is_refused_from_its_header(guarded: ServeProcess) -> None:
    with grpc.insecure_channel(guarded.address) as channel:
        # 64 MiB (all of the 0.0625 GiB budget) and 16 KiB: whichever the server admits first, the other one
        # cannot fit and is refused from its header; the admitted one stalls until the idle timeout closes it.
        uploads = [Upload(channel, 4096, 4096, 0), Upload(channel, 64, 64, 0)]
        try:
            refused = [e for e in (u.error(timeout=15) for u in uploads)
                       if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED]
            assert len(refused) == 1, refused
            assert "upload budget" in refused[0].details() and "--upload-budget" in refused[0].details()
        finally:
            for u in uploads:
                u.cancel()
    with Client(guarded.address) as client, pytest.raises(errors.ResourceExhausted, match="more than the server's"):
        client.echo(np.zeros((4097, 4096, 4), np.uint8))  # refused from the header: its pixels are never sent
