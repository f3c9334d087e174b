"""Generate the Python code for proto/impasto/v1/impasto.proto (the one codegen script).

    python backend/impasto/_proto/codegen.py          # regenerate both outputs in place
    python backend/impasto/_proto/codegen.py --check  # exit 1 if the committed files are stale

Two outputs from the one contract:
- backend/impasto/_proto/: message classes, grpcio stubs and mypy-protobuf type stubs (.pyi) for the
  server and the numpy client;
- plugins/common/impasto_client/_proto/: message classes and grpclib stubs for the editor plugins, which
  must stay pure Python (no grpcio).

protoc writes `impasto/v1/...` paths and absolute `impasto.v1` imports; we flatten the files into each
package and make the imports package-relative, so neither output needs the proto root on sys.path.
Needs grpcio-tools, mypy-protobuf and grpclib (the `test` extra).
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROTO_ROOT = ROOT / "proto"
PROTO = "impasto/v1/impasto.proto"
BACKEND_OUT = ROOT / "backend" / "impasto" / "_proto"
PLUGIN_OUT = ROOT / "plugins" / "common" / "impasto_client" / "_proto"

BACKEND_FILES = ("impasto_pb2.py", "impasto_pb2.pyi", "impasto_pb2_grpc.py", "impasto_pb2_grpc.pyi")
PLUGIN_FILES = ("impasto_pb2.py", "impasto_grpc.py")

HEADER = (
    "# Generated from proto/impasto/v1/impasto.proto by backend/impasto/_proto/codegen.py. Do not edit.\n"
    "# ruff: noqa\n"
)

# protoc plugins, run as tiny scripts with this interpreter so the venv's bin/ need not be on PATH.
_PLUGINS = {
    "mypy": "from mypy_protobuf.main import main",
    "mypy_grpc": "from mypy_protobuf.main import grpc as main",
    "python_grpc": "from grpclib.plugin.main import main",
}


def _write_plugins(folder: Path) -> list[str]:
    args = []
    for name, imp in _PLUGINS.items():
        path = folder / f"protoc-gen-{name}"
        path.write_text(f"#!{sys.executable}\nimport sys\n{imp}\nsys.exit(main())\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        args.append(f"--plugin=protoc-gen-{name}={path}")
    return args


def _protoc(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_ROOT}", *args, PROTO]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"codegen: protoc failed:\n{proc.stderr}")


def _relative_imports(text: str) -> str:
    # `from impasto.v1 import impasto_pb2 as x` (grpcio) and `import impasto.v1.impasto_pb2` (grpclib, .pyi)
    text = re.sub(r"^from impasto\.v1 import (\w+)", r"from . import \1", text, flags=re.M)
    text = re.sub(r"^import impasto\.v1\.(\w+)$", r"from . import \1", text, flags=re.M)
    return re.sub(r"\bimpasto\.v1\.(impasto_pb2)\b", r"\1", text)


def generate(backend_out: Path, plugin_out: Path) -> None:
    """Write the backend and plugin code into the two folders (created if missing)."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        plugins = _write_plugins(tmp)
        raw_backend, raw_plugin = tmp / "backend", tmp / "plugin"
        raw_backend.mkdir()
        raw_plugin.mkdir()
        _protoc([*plugins, f"--python_out={raw_backend}", f"--grpc_python_out={raw_backend}",
                 f"--mypy_out={raw_backend}", f"--mypy_grpc_out={raw_backend}"])
        _protoc([*plugins, f"--python_out={raw_plugin}", f"--python_grpc_out={raw_plugin}"])
        jobs = ((raw_backend, backend_out, BACKEND_FILES), (raw_plugin, plugin_out, PLUGIN_FILES))
        for raw, out, names in jobs:
            out.mkdir(parents=True, exist_ok=True)
            for name in names:
                text = (raw / "impasto" / "v1" / name).read_text()
                (out / name).write_text(HEADER + _relative_imports(text))


def stale_files(backend_out: Path = BACKEND_OUT, plugin_out: Path = PLUGIN_OUT) -> list[str]:
    """Generated files whose committed text differs from a fresh generation (empty when up to date)."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        generate(tmp / "backend", tmp / "plugin")
        stale = []
        for fresh_dir, out, names in ((tmp / "backend", backend_out, BACKEND_FILES),
                                      (tmp / "plugin", plugin_out, PLUGIN_FILES)):
            for name in names:
                target = out / name
                if not target.exists() or target.read_text() != (fresh_dir / name).read_text():
                    stale.append(os.path.relpath(target, ROOT))
        return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="only report stale files (exit 1 if any)")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"codegen: stale: {path}", file=sys.stderr)
        if stale:
            print("codegen: run `python backend/impasto/_proto/codegen.py` and commit the result",
                  file=sys.stderr)
        return 1 if stale else 0
    generate(BACKEND_OUT, PLUGIN_OUT)
    print(f"codegen: wrote {os.path.relpath(BACKEND_OUT, ROOT)} and {os.path.relpath(PLUGIN_OUT, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
