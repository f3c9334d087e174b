"""Who may connect (token, loopback, TLS), and how the server goes away (health, grace period)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from impasto import errors
from impasto.cancel import CancelToken
from impasto.serve.client import Client
from impasto_serve_proc import (
    ROOT,
    Background,
    RefineTimes,
    ServeProcess,
    child_env,
    import_plugin_client,
    make_image,
    wait_for,
)
from PIL import Image

impasto_client = import_plugin_client()

TOKEN = "s3cret-token"


def health_status(address: str, service: str = "impasto.v1.Impasto") -> int:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(reply.status)


def check_token_required(address: str) -> None:
    image = make_image(8, 8, "uint8")
    for token in (None, "wrong"):
        with Client(address, token=token) as c, pytest.raises(errors.Unauthenticated, match="token"):
            c.echo(image)
        with pytest.raises(impasto_client.BackendError) as info:
            impasto_client.ImpastoClient(address, token=token).server_info()
        assert info.value.code == "UNAUTHENTICATED"
    with Client(address, token=TOKEN) as c:
        np.testing.assert_array_equal(c.echo(image), image)
        assert c.models("sr")
    assert impasto_client.ImpastoClient(address, token=TOKEN).server_info().version
    # Supervisors probe health without credentials.
    assert health_status(address) == health_pb2.HealthCheckResponse.SERVING


def test_token_on_loopback() -> None:
    with ServeProcess("--token", TOKEN) as server:
        check_token_required(server.address)


@pytest.mark.slow
def test_off_loopback_needs_a_token() -> None:
    proc = subprocess.run([sys.executable, "-m", "impasto", "serve", "--address", "0.0.0.0:0"],
                          capture_output=True, text=True, env=child_env(), cwd=ROOT, timeout=120)
    assert proc.returncode == 1 and "serving on" not in proc.stdout
    assert "needs a token" in proc.stderr and "--token" in proc.stderr
    # A token over plain TCP off loopback needs an explicit --insecure-token (tests/unit/test_cli.py: refused).
    with ServeProcess("--token", TOKEN, "--insecure-token", host="0.0.0.0") as server:
        check_token_required(server.address)


def test_token_from_a_file_or_the_environment_stays_out_of_the_process_list(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from impasto.cli import main

    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    src = tmp_path / "a.png"
    Image.new("RGB", (8, 6), (200, 100, 0)).save(src)
    upscale = ["upscale", str(src), str(tmp_path / "b.png"), "--scale", "2", "--model", "bicubic", "-q"]
    with ServeProcess("--token-file", str(secret)) as server:
        assert TOKEN not in Path(f"/proc/{server.proc.pid}/cmdline").read_text()
        check_token_required(server.address)
        assert main([*upscale, "--remote", server.address]) == 1  # no token
        assert "token" in capsys.readouterr().err
        assert main([*upscale, "--remote", server.address, "--token-file", str(secret)]) == 0
        monkeypatch.setenv("IMPASTO_TOKEN", TOKEN)
        assert main([*upscale, "--remote", server.address]) == 0
        assert Image.open(tmp_path / "b.png").size == (16, 12)
    with ServeProcess() as server:  # IMPASTO_TOKEN is still set: the server takes it from the environment
        check_token_required(server.address)


@pytest.mark.slow
def test_health_goes_not_serving_on_shutdown_and_running_jobs_are_cancelled_after_grace() -> None:
    server = ServeProcess("--grace", "2")
    try:
        assert health_status(server.address) == health_pb2.HealthCheckResponse.SERVING
        assert health_status(server.address, "") == health_pb2.HealthCheckResponse.SERVING
        client = Client(server.address)
        times, token = RefineTimes(), CancelToken()
        job = Background(lambda: client.stylize(make_image(96, 128, "uint8"), "udnie", refine=1000, progress=times,
                                                cancel=token))
        assert times.refining.wait(120)
        server.proc.terminate()  # SIGTERM: graceful
        wait_for(lambda: health_status(server.address) == health_pb2.HealthCheckResponse.NOT_SERVING, 10)
        with pytest.raises(errors.Unavailable, match="shutting down"):  # no new jobs during the grace period
            client.stylize(make_image(8, 8, "uint8"), "udnie")
        start = time.monotonic()
        job.join(30)
        assert isinstance(job.error, errors.Cancelled | errors.Unavailable), job.error
        assert time.monotonic() - start < 10
        assert server.proc.wait(30) == 0
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a test certificate")
def test_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    with ServeProcess("--tls-cert", str(cert), "--tls-key", str(key)) as server:
        image = make_image(8, 8, "float32")
        with Client(server.address, root_certificates=cert.read_bytes()) as c:
            np.testing.assert_array_equal(c.echo(image), image)
        import ssl

        context = ssl.create_default_context(cafile=str(cert))
        context.set_alpn_protocols(["h2"])
        plugin = impasto_client.ImpastoClient(server.address, ssl=context)
        assert plugin.echo(image.tobytes(), 8, 8, "RGBA_F32").data == image.tobytes()
        with Client(server.address) as plain, pytest.raises(errors.ImpastoError):
            plain.echo(image)  # plain TCP to a TLS port fails


class Started:
    """Progress sink: set once the "stylize" stage has begun (the job is running, not queued)."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, stage: str, fraction: float, *_: object) -> None:
        if stage == "stylize":
            self.event.set()


@pytest.mark.parametrize("runtime", ["torch", "openvino"])
def test_sigterm_during_a_long_whole_image_job_exits_cleanly(runtime: str) -> None:
    """Issue 13: a SIGTERM during a whole-image job once ended in SIGABRT ("terminate called without an active
    exception"). With no grace the job is cancelled mid-call, and the server must exit 0 within seconds."""
    server = ServeProcess("--runtime", runtime, "--grace", "0")
    try:
        with Client(server.address) as client:
            client.stylize(make_image(32, 32, "uint8"), "udnie")  # loaded (and converted) before the big job
            started = Started()
            job = Background(lambda: client.stylize(make_image(2048, 2048, "uint8", channels=3), "udnie",
                                                    progress=started))
            assert started.event.wait(60)
            time.sleep(0.3)  # well inside the call (a 2048x2048 call takes over a second on either runtime)
            server.proc.terminate()
            start = time.monotonic()
            assert server.proc.wait(30) == 0, "".join(server.stderr)
            assert time.monotonic() - start < 10
            job.join(30)
        assert job.result is None and isinstance(job.error, errors.Cancelled | errors.Unavailable), job.error
        err = "".join(server.stderr)
        assert "terminate called" not in err and "Traceback" not in err, err
    finally:
        server.stop()


def test_a_result_finished_during_the_grace_period_is_delivered() -> None:
    server = ServeProcess("--runtime", "torch", "--grace", "60")
    try:
        with Client(server.address) as client:
            started = Started()
            image = make_image(1024, 1024, "uint8", channels=3)
            job = Background(lambda: client.stylize(image, "udnie", progress=started))
            assert started.event.wait(60)
            server.proc.terminate()  # the job finishes within the grace period: its image still arrives
            job.join(120)
            assert job.error is None, job.error
            assert job.result.shape == image.shape and job.result.dtype == np.uint8
            assert server.proc.wait(30) == 0, "".join(server.stderr)
    finally:
        server.stop()
