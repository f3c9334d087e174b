"""The plugins' client must stay pure Python: editors' bundled Pythons cannot load grpcio or numpy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

COMMON = Path(__file__).resolve().parents[2] / "plugins" / "common"


def test_import_loads_no_compiled_grpc_or_numpy() -> None:
    code = (
        "import sys, impasto_client\n"
        "from google.protobuf.internal import api_implementation\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'numpy', 'torch', 'impasto'))\n"
        "print(api_implementation.Type(), bad)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"}
    env["PYTHONPATH"] = str(COMMON)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["python", "[]"]


def test_buffer_size_and_address_checks() -> None:
    code = (
        "from impasto_client import ImpastoClient, buffer_size\n"
        "print(buffer_size(3, 2, 'BGRA_U16'), buffer_size(3, 2, 'RGB_F32_LINEAR'))\n"
        "c = ImpastoClient('[::1]:7')\n"
        "print(c.host, c.port)\n"
        "for bad in (lambda: buffer_size(1, 1, 'XYZ_U8'), lambda: ImpastoClient('localhost')):\n"
        "    try:\n"
        "        bad()\n"
        "    except ValueError as exc:\n"
        "        print('ValueError', exc)\n"
    )
    # In a child process: importing the client switches protobuf to pure Python for the whole process.
    env = {**os.environ, "PYTHONPATH": str(COMMON)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[:2] == [str(3 * 2 * 4 * 2) + " " + str(3 * 2 * 3 * 4), "::1 7"]
    assert lines[2].startswith("ValueError unknown pixel format")
    assert "HOST:PORT" in lines[3]
