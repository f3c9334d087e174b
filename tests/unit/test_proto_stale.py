"""The committed generated code must match proto/impasto/v1/impasto.proto (regenerated into a temp dir)."""

from __future__ import annotations

import pytest
from impasto._proto import codegen


def test_generated_code_is_fresh() -> None:
    if not (codegen.PROTO_ROOT / codegen.PROTO).exists():
        pytest.skip("not a source checkout (no proto/ folder)")
    pytest.importorskip("grpc_tools")
    pytest.importorskip("mypy_protobuf")
    pytest.importorskip("grpclib")
    stale = codegen.stale_files()
    assert not stale, f"stale generated code {stale}: run `python backend/impasto/_proto/codegen.py`"


def test_imports_are_package_relative() -> None:
    text = (codegen.BACKEND_OUT / "impasto_pb2_grpc.py").read_text()
    assert "from . import impasto_pb2" in text and "from impasto.v1" not in text
    plugin = (codegen.PLUGIN_OUT / "impasto_grpc.py").read_text()
    assert "from . import impasto_pb2" in plugin and "import impasto.v1" not in plugin
