"""Property-based tests of the model-file reader (issue 14): random and mutated state dicts, safetensors files,
ml5 folders and pickles. Whatever the bytes, only Impasto's own errors come out (never an internal error), a
file that is accepted gives a network that runs, and memory stays bounded. 1,100 examples in all, small ones."""

from __future__ import annotations

import io
import json
import math
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from impasto.errors import ImpastoError
from impasto.models.convert import convert
from impasto.models.fileformat import build_network, load_state, read_info, save_model
from impasto.models.info import ModelInfo
from impasto.nets.registry import archs, find_arch, get_arch
from peak_memory import PeakRSS

# peak resident memory a whole fuzz run may add (each example is tiny; a reader that trusted the files
# would build networks or materialise tensors of gigabytes)
LIMIT_MB = 250


def _fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


SMALL: dict[str, dict[str, Any]] = {
    "johnson": {"widths": [2, 3, 4], "res_blocks": 1},
    "engstrom": {"widths": [2, 3, 4], "res_blocks": 1},
    "johnson_sr": {"scale": 2, "channels": 3, "blocks": 1, "bicubic_skip": False},
    "srgan": {"scale": 2, "channels": 3, "blocks": 1},
}
_STATES: dict[str, dict[str, torch.Tensor]] = {}


def _valid_state(name: str) -> dict[str, torch.Tensor]:
    if name not in _STATES:
        net = get_arch(name).build(**SMALL[name])
        _STATES[name] = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    return dict(_STATES[name])


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # the nets here are tiny: with two threads on a busy machine each conv waits on its pool (50x slower)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _check_accepted(net: torch.nn.Module) -> None:
    """An accepted file gives a network that runs on a small image and keeps to its own description."""
    spec = net.spec  # type: ignore[attr-defined]
    with torch.inference_mode():
        y = net(torch.rand(1, 3, 8, 8) * 255)
    assert y.shape[-2:] == (8 * spec.scale, 8 * spec.scale)


def _only_our_errors(fn: Callable[[], object]) -> object:
    try:
        result = fn()
    except ImpastoError as exc:
        assert exc.message and "\n" not in exc.message and len(exc.message) < 1000, exc.message
        event(f"refused: {type(exc).__name__}")
        return None
    event("accepted")
    return result


# ---- state dicts: random keys and tensors, and valid ones mutated ----

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.uint8, torch.int64,
          torch.bool, torch.complex64]
KEY_TEMPLATES = ["res{}.conv1.conv2d.weight", "res{}.x", "block{}.0.weight", "block{}.conv1.weight",
                 "body.{}.conv1.weight", "up.{}.conv.weight", "up.{}", "in{}.weight", "deconv{}.conv.weight"]
small_shapes = st.lists(st.integers(0, 6), max_size=5)
huge_shapes = st.lists(st.integers(1, 1 << 20), min_size=1, max_size=4).filter(lambda s: math.prod(s) < 2**62)


@st.composite
def tensors(draw: st.DrawFn) -> torch.Tensor:
    dtype = draw(st.sampled_from(DTYPES))
    if draw(st.integers(0, 5)) == 0:  # a stride-0 view of one element claiming a large shape
        return torch.zeros(1, dtype=dtype).expand(*draw(huge_shapes))
    return torch.zeros(draw(small_shapes), dtype=dtype)


keys = st.one_of(
    st.builds(lambda t, n: t.format(n), st.sampled_from(KEY_TEMPLATES), st.integers(0, 10**7)),
    st.text(max_size=12),
)


@st.composite
def state_dicts(draw: st.DrawFn) -> dict[str, torch.Tensor]:
    if draw(st.booleans()):
        return draw(st.dictionaries(keys, tensors(), max_size=8))
    state = _valid_state(draw(st.sampled_from(sorted(SMALL))))
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["drop", "replace", "add", "reshape", "cast", "rename"]))
        key = draw(st.sampled_from(sorted(state))) if state else None
        if action == "drop" and key:
            del state[key]
        elif action == "replace" and key:
            state[key] = draw(tensors())
        elif action == "add":
            state[draw(keys)] = draw(tensors())
        elif action == "reshape" and key:
            state[key] = torch.zeros(draw(small_shapes))
        elif action == "cast" and key:
            state[key] = state[key].to(draw(st.sampled_from(DTYPES)))
        elif action == "rename" and key:
            state[draw(keys)] = state.pop(key)
    return state


@_fuzz(450)
@given(state=state_dicts(), stored=st.dictionaries(st.sampled_from(["bicubic_skip", "scale"]),
                                                   st.one_of(st.booleans(), st.integers(), st.text(max_size=3))))
def _fuzz_state_dicts(state: dict[str, torch.Tensor], stored: dict[str, Any]) -> None:
    for arch in archs():
        arch.detect(set(state))
        net = _only_our_errors(lambda arch=arch: arch.load(state, stored))  # type: ignore[misc]
        if net is not None:
            _check_accepted(net)  # type: ignore[arg-type]
    _only_our_errors(lambda: find_arch(state, "fuzz"))


def test_random_state_dicts_give_only_model_file_errors() -> None:
    with PeakRSS() as peak:
        _fuzz_state_dicts()
    assert peak.below(LIMIT_MB), f"peak {peak.mb:.0f} MiB"


# ---- safetensors files: a valid file's header and bytes mutated ----

_WORK = Path(tempfile.mkdtemp(prefix="impasto-fuzz-"))


def _valid_file(name: str) -> bytes:
    kind = "sr" if name in ("johnson_sr", "srgan") else "style"
    info = ModelInfo(name="m", kind=kind, arch=name, scale=SMALL[name].get("scale", 1), params=dict(SMALL[name]))
    path = save_model(_WORK / f"valid-{name}.safetensors", _valid_state(name), info)
    return path.read_bytes()


def _split(data: bytes) -> tuple[dict[str, Any], bytes]:
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _join(header: dict[str, Any], body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


json_values = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=6),
                        st.lists(st.integers(-5, 2**40), max_size=5))


@st.composite
def safetensors_files(draw: st.DrawFn) -> bytes:
    header, body = _split(_valid_file(draw(st.sampled_from(sorted(SMALL)))))
    names = sorted(k for k in header if k != "__metadata__")
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["dtype", "shape", "offsets", "drop", "meta", "meta_json", "flip", "cut"]))
        name = draw(st.sampled_from(names))
        if action == "dtype" and name in header:
            header[name]["dtype"] = draw(st.sampled_from(["F16", "F32", "I8", "U8", "BOOL", "I64", "F64", "BF16", "X"]))
        elif action == "shape" and name in header:
            header[name]["shape"] = draw(st.one_of(small_shapes, huge_shapes, json_values))
        elif action == "offsets" and name in header:
            header[name]["data_offsets"] = draw(st.lists(st.integers(-5, len(body) + 100), max_size=3))
        elif action == "drop":
            header.pop(name, None)
        elif action == "meta" and header["__metadata__"]["impasto"].startswith("{"):
            meta = json.loads(header["__metadata__"]["impasto"])
            meta[draw(st.sampled_from(["kind", "arch", "scale", "params", "name", "tiling_exact"]))] = draw(
                st.one_of(json_values, st.sampled_from(["style", "sr", "srgan", "johnson", "johnson_sr"]),
                          st.dictionaries(st.sampled_from(["bicubic_skip", "widths"]), json_values, max_size=2)))
            header["__metadata__"]["impasto"] = json.dumps(meta)
        elif action == "meta_json":
            header["__metadata__"]["impasto"] = draw(st.text(max_size=20))
    data = _join(header, body)
    if draw(st.booleans()):
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(data) - 1))
            data = data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1 :]
    if draw(st.integers(0, 4)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data


def _read_safetensors(path: Path) -> None:
    info = read_info(path)
    net = build_network(info, load_state(path))
    _check_accepted(net)


@_fuzz(350)
@given(data=safetensors_files())
def _fuzz_safetensors(data: bytes) -> None:
    path = _WORK / "fuzz.safetensors"
    path.write_bytes(data)
    _only_our_errors(lambda: _read_safetensors(path))


def test_mutated_safetensors_files_give_only_model_file_errors() -> None:
    with PeakRSS() as peak:
        _fuzz_safetensors()
    assert peak.below(LIMIT_MB), f"peak {peak.mb:.0f} MiB"


# ---- ml5 folders: random manifests and variable files ----

manifest_entries = st.one_of(
    st.fixed_dictionaries({"filename": st.sampled_from(["a", "b", "../x", "", "a/.."]),
                           "shape": st.one_of(small_shapes, huge_shapes, json_values)}),
    json_values,
)
manifests = st.one_of(
    st.dictionaries(st.sampled_from(["Variable"] + [f"Variable_{i}" for i in range(1, 20)] + ["x_y", "V_999999"]),
                    manifest_entries, max_size=20),
    st.lists(json_values, max_size=3), json_values,
)


@_fuzz(150)
@given(manifest=manifests, a=st.binary(max_size=64), b=st.binary(max_size=16))
def _fuzz_ml5(manifest: object, a: bytes, b: bytes) -> None:
    folder = _WORK / "ml5"
    folder.mkdir(exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "a").write_bytes(a)
    (folder / "b").write_bytes(b)
    _only_our_errors(lambda: convert(folder, "x"))


def test_random_ml5_folders_give_only_model_file_errors() -> None:
    with PeakRSS() as peak:
        _fuzz_ml5()
    assert peak.below(LIMIT_MB), f"peak {peak.mb:.0f} MiB"


# ---- pickles: random objects saved with torch.save, and valid files with bytes changed ----

pickled = st.recursive(
    st.one_of(json_values, tensors()),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.one_of(keys, st.integers()), inner,
                                                                         max_size=4)),
    max_leaves=8,
)


@st.composite
def pickle_files(draw: st.DrawFn) -> bytes:
    buf = io.BytesIO()
    if draw(st.booleans()):
        torch.save(draw(pickled), buf)
        return buf.getvalue()
    state = draw(state_dicts())
    torch.save({"state_dict": state} if draw(st.booleans()) else state, buf)
    data = buf.getvalue()
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1 :]
    return data


@_fuzz(150)
@given(data=pickle_files())
def _fuzz_pickles(data: bytes) -> None:
    path = _WORK / "fuzz.pth"
    path.write_bytes(data)
    result = _only_our_errors(lambda: convert(path, "x"))
    if result is not None:
        state, info = result  # type: ignore[misc]
        _check_accepted(build_network(info, state))


def test_random_pickles_give_only_model_file_errors() -> None:
    with PeakRSS() as peak:
        _fuzz_pickles()
    assert peak.below(LIMIT_MB), f"peak {peak.mb:.0f} MiB"
