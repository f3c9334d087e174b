"""Stylize and upscale through the real server (port 0) equal the engine's direct result, in every depth."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from impasto.engine.pixels import PixelBuffer, PixelFormat
from impasto.serve.client import Client
from impasto_serve_proc import ROOT, ServeProcess, child_env, direct_engine, make_image


@pytest.fixture(scope="module")
def server() -> Iterator[ServeProcess]:
    with ServeProcess("--max-pixels", "20000") as proc:
        yield proc


@pytest.fixture(scope="module")
def client(server: ServeProcess) -> Iterator[Client]:
    with Client(server.address) as c:
        yield c


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_stylize_equals_engine(client: Client, dtype: str) -> None:
    image = make_image(24, 40, dtype, seed=1)
    stages: list[str] = []
    out = client.stylize(image, "udnie", strength=0.8, progress=lambda stage, fraction: stages.append(stage))
    direct = direct_engine().stylize(PixelBuffer.from_array(image), "udnie", strength=0.8)
    assert out.dtype == image.dtype and out.shape == image.shape
    np.testing.assert_array_equal(out, direct.array)
    np.testing.assert_array_equal(out[:, :, 3], image[:, :, 3])  # alpha untouched
    assert "stylize" in stages


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_upscale_equals_engine(client: Client, dtype: str) -> None:
    image = make_image(20, 24, dtype, seed=2)
    out = client.upscale(image, 2)
    direct = direct_engine().upscale(PixelBuffer.from_array(image), 2)
    assert out.dtype == image.dtype and out.shape == (40, 48, 4)
    np.testing.assert_array_equal(out, direct.array)


def test_pil_in_pil_out(client: Client) -> None:
    from PIL import Image

    image = Image.fromarray(make_image(20, 28, "uint8", channels=3, seed=3))
    out = client.upscale(image, 2, model="bicubic")
    assert isinstance(out, Image.Image) and out.size == (56, 40) and out.mode == "RGB"


def test_models_and_info(client: Client) -> None:
    names = {m.name: m for m in client.models()}
    assert {"udnie", "srgan-x2"} <= names.keys()
    assert names["srgan-x2"].kind == "sr" and names["srgan-x2"].scale == 2
    assert all(m.kind == "style" for m in client.models("style"))
    info = client.info()
    assert info.device == "cpu" and info.max_pixels == 20000 and "stylize" in info.operations


# Runs in a child process: importing impasto_client switches protobuf to pure Python, as in the editors.
_PLUGIN_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[2])
import impasto_client
from google.protobuf.internal import api_implementation
c = impasto_client.ImpastoClient(sys.argv[1])
data = bytes(range(256)) * (20 * 24 * 4 // 256) + bytes(20 * 24 * 4 % 256)
events = []
s = c.stylize(data, 24, 20, "BGRA_U8", "wave", progress=lambda *e: events.append(e[0]))
u = c.upscale(data, 24, 20, "BGRA_U8", 2)
e = c.echo(data, 24, 20, "BGRA_U8")
print(json.dumps({"impl": api_implementation.Type(), "stylize": [s.data.hex(), s.width, s.height, s.pixel_format],
                  "upscale": [u.data.hex(), u.width, u.height], "echo": e.data == data, "stages": events,
                  "models": [m.name for m in c.list_models("sr")], "version": c.server_info().version}))
"""


def test_plugin_client_pure_python(server: ServeProcess) -> None:
    env = child_env()
    env["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
    proc = subprocess.run([sys.executable, "-c", _PLUGIN_SCRIPT, server.address, str(ROOT / "plugins" / "common")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["impl"] == "python" and got["echo"] and "srgan-x2" in got["models"] and got["version"]
    data = bytes(range(256)) * (20 * 24 * 4 // 256) + bytes(20 * 24 * 4 % 256)
    buf = PixelBuffer.from_bytes(data, 24, 20, PixelFormat.parse("BGRA_U8"))
    stylized = direct_engine().stylize(buf, "wave")
    assert got["stylize"] == [stylized.tobytes().hex(), 24, 20, "BGRA_U8"]
    upscaled = direct_engine().upscale(buf, 2)
    assert got["upscale"] == [upscaled.tobytes().hex(), 48, 40]
    assert "stylize" in got["stages"]


@pytest.mark.slow
def test_gatys_sends_two_images_and_equals_engine(client: Client) -> None:
    content, style = make_image(24, 32, "uint8", seed=6), make_image(20, 20, "uint8", channels=3, seed=7)
    out = client.gatys(content, style, iterations=3, max_size=32)
    direct = direct_engine().gatys(PixelBuffer.from_array(content), PixelBuffer.from_array(style), iterations=3,
                                   max_size=32)
    np.testing.assert_array_equal(out, direct.array)


@pytest.mark.slow
def test_cli_remote_equals_cli_local(server: ServeProcess, tmp_path: Path) -> None:
    from PIL import Image

    src = tmp_path / "in.png"
    Image.fromarray(make_image(24, 32, "uint8", seed=8)).save(src)
    outputs = {}
    for how, extra in (("local", ["--device", "cpu"]), ("remote", ["--remote", server.address])):
        dst = tmp_path / f"{how}.png"
        proc = subprocess.run([sys.executable, "-m", "impasto", "stylize", str(src), str(dst), "--style", "udnie",
                               "--strength", "0.7", "-q", *extra],
                              capture_output=True, text=True, env=child_env(), cwd=ROOT, timeout=300)
        assert proc.returncode == 0, proc.stderr
        outputs[how] = np.asarray(Image.open(dst))
    np.testing.assert_array_equal(outputs["remote"], outputs["local"])
