"""Hostile and malformed model files (issue 14, items 5 and 6): each is refused with a ModelFileError before
anything large is allocated. The files are made here, small, the way an attacker or a damaged download would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from impasto.errors import ModelFileError
from impasto.models.convert import convert
from impasto.models.fileformat import build_network, load_state, read_info, save_model
from impasto.models.info import ModelInfo
from impasto.models.store import ModelStore
from impasto.nets.johnson import build_johnson
from impasto.nets.sr import build_johnson_sr
from peak_memory import PeakRSS

# what refusing a file may cost: reading it and a little bookkeeping (the old code took 1.3-1.6 GB)
LIMIT_MB = 150


def _save(tmp_path: Path, name: str, state: dict[str, torch.Tensor]) -> Path:
    path = tmp_path / name
    torch.save(state, path)
    return path


def _small_johnson() -> dict[str, torch.Tensor]:
    return dict(build_johnson(widths=(4, 6, 8), res_blocks=1).state_dict())


def _refused(path: Path, match: str) -> float | None:
    with PeakRSS() as peak, pytest.raises(ModelFileError, match=match):
        convert(path, "x")
    assert peak.below(LIMIT_MB), f"refusing {path.name} peaked at {peak.mb:.0f} MiB"
    return peak.mb


def test_srgan_file_naming_block3000_is_refused_before_building(tmp_path: Path) -> None:
    # one real first conv and one dummy key: the old reader built 2,997 residual blocks of width 64
    state = {"block1.0.weight": torch.zeros(64, 3, 9, 9, dtype=torch.float16), "block3000.x": torch.zeros(1)}
    _refused(_save(tmp_path, "g.pth", state), "number of residual blocks is 2997, outside 1..64")


def test_johnson_file_with_1200_dummy_residual_keys_is_refused_before_building(tmp_path: Path) -> None:
    state = {f"conv{i}.conv2d.weight": torch.zeros(w, 3, 3, 3, dtype=torch.float16)
             for i, w in ((1, 32), (2, 64), (3, 128))}
    state.update({f"res{i}.x": torch.zeros(1, dtype=torch.float16) for i in range(1, 1201)})
    _refused(_save(tmp_path, "j.pth", state), "number of residual blocks is 1200")


def test_johnson_file_with_dummy_keys_under_the_cap_fails_on_shapes_not_memory(tmp_path: Path) -> None:
    # within the bounds, the weights must still be those of the network: checked on a skeleton without memory
    state = {f"conv{i}.conv2d.weight": torch.zeros(w, 3, 3, 3, dtype=torch.float16)
             for i, w in ((1, 1024), (2, 1024), (3, 1024))}
    state.update({f"res{i}.x": torch.zeros(1, dtype=torch.float16) for i in range(1, 61)})
    _refused(_save(tmp_path, "j60.pth", state), "do not match the architecture")


@pytest.mark.parametrize(("shape", "match"), [
    ((10_000, 32_768), "element count"),  # 1.3 GB once made float32: over the per-tensor cap
    ((4_000, 16_384), "overlapping or expanded"),  # 262 MB: under the cap, but 2 bytes of storage
])
def test_stride0_tensor_claiming_gigabytes_is_refused_before_converting(tmp_path: Path, shape: tuple,
                                                                        match: str) -> None:
    state = _small_johnson()
    # a small pickle: one fp16 number viewed as a huge matrix (stride 0)
    state["res1.conv1.conv2d.weight"] = torch.zeros(1, dtype=torch.float16).expand(*shape)
    path = _save(tmp_path, "expanded.pth", state)
    assert path.stat().st_size < 100_000
    _refused(path, match)


@pytest.mark.parametrize("dtype", [torch.int8, torch.bool, torch.int64])
def test_non_float_weights_are_refused_on_import(tmp_path: Path, impasto_home: Path, dtype: torch.dtype) -> None:
    state = _small_johnson()
    state["conv1.conv2d.weight"] = state["conv1.conv2d.weight"].to(dtype)
    with pytest.raises(ModelFileError, match="floating point"):
        ModelStore().import_path(_save(tmp_path, "q.pth", state), "q")
    # the same in our own format: refused by the reader, so neither import nor load accepts it
    info = ModelInfo(name="q", kind="style", arch="johnson", params={"widths": [4, 6, 8], "res_blocks": 1})
    ours = save_model(tmp_path / "q.safetensors", state, info)
    with pytest.raises(ModelFileError, match="floating point"):
        load_state(ours)
    with pytest.raises(ModelFileError, match="floating point"):
        ModelStore().import_path(ours, "q2")
    assert "q" not in ModelStore().names() and "q2" not in ModelStore().names()


def _ml5(tmp_path: Path, manifest: object, files: dict[str, bytes] | None = None) -> Path:
    folder = tmp_path / "style"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    for name, data in (files or {}).items():
        (folder / name).write_bytes(data)
    return folder


@pytest.mark.parametrize(("manifest", "match"), [
    ({"Variable": {"shape": [3]}}, "no file name"),
    ([{"filename": "Variable", "shape": [3]}], "holds a list"),
    ({"Variable": {"filename": "Variable", "shape": [2**20, 2**20]}}, "element count"),
    ({"Variable": {"filename": "Variable", "shape": [2**32, 2**32]}}, "outside 0..67108864"),
    ({"Variable": {"filename": "Variable", "shape": [2**62, 4]}}, "outside 0..67108864"),
    ({"Variable": {"filename": "Variable", "shape": ["3"]}}, "outside"),
    ({"Variable": {"filename": "Variable", "shape": [-3]}}, "outside"),
    ({"Variable": {"filename": "Variable", "shape": 3}}, "not a list"),
    ({"Variable": {"filename": 7, "shape": [3]}}, "no file name"),
    ({"Variable": {"filename": "../../etc/passwd", "shape": [3]}}, "outside the folder"),
    ({"Variable_x": {"filename": "Variable", "shape": [3]}}, "no number"),
    ({}, "the number of variables is 0"),
    ({"Variable": {"filename": "Variable", "shape": [4]}}, "3 values, but the manifest says shape"),
])
def test_malformed_ml5_manifest_is_a_model_file_error(tmp_path: Path, manifest: object, match: str) -> None:
    folder = _ml5(tmp_path, manifest, {"Variable": b"\0" * 12})
    with pytest.raises(ModelFileError, match=match):
        convert(folder, "x")


def test_ml5_with_wrongly_shaped_variables_is_a_model_file_error(tmp_path: Path) -> None:
    # 18 vector variables: the right count for a net without residual blocks, but no 4-D kernels
    manifest = {f"Variable_{i}" if i else "Variable": {"filename": "v", "shape": [3]} for i in range(18)}
    with pytest.raises(ModelFileError, match="expected a 4-D kernel"):
        convert(_ml5(tmp_path, manifest, {"v": b"\0" * 12}), "x")


def test_johnson_sr_file_without_upsampling_stages_is_a_model_file_error(tmp_path: Path) -> None:
    state = {k: v for k, v in build_johnson_sr(scale=2, channels=4, blocks=1).state_dict().items()
             if not k.startswith("up.")}
    with pytest.raises(ModelFileError, match=r"upsampling stages \(up.N\) is 0"):
        convert(_save(tmp_path, "sr.pth", state), "x")


@pytest.mark.parametrize(("key", "shape"), [
    ("conv1.conv2d.weight", ()), ("head.weight", (3,)), ("block1.0.weight", ()),
])
def test_first_layer_of_the_wrong_rank_is_a_model_file_error(tmp_path: Path, key: str, shape: tuple) -> None:
    state = {key: torch.zeros(shape)}
    if key.startswith("block1"):
        state["block7.0.conv.weight"] = torch.zeros(1)
    with pytest.raises(ModelFileError, match="expected 4 dimensions"):
        convert(_save(tmp_path, "r.pth", state), "x")


@pytest.mark.parametrize("data", [b"", b"hello world\n", b"\x80\x02}q\x00.", b"PK\x03\x04" + b"\0" * 40])
def test_importing_a_file_that_is_not_a_model_is_a_model_file_error(tmp_path: Path, impasto_home: Path,
                                                                     data: bytes) -> None:
    path = tmp_path / "notes.pth"
    path.write_bytes(data)
    with pytest.raises(ModelFileError):
        ModelStore().import_path(path, "notes")


def test_descriptor_that_disagrees_with_the_weights_is_refused(tmp_path: Path) -> None:
    state = {k: v for k, v in build_johnson_sr(scale=2, channels=4, blocks=1).state_dict().items()
             if not k.endswith("num_batches_tracked")}
    as_style = ModelInfo(name="m", kind="style", arch="johnson_sr", scale=2)
    with pytest.raises(ModelFileError, match="says 'style' but the weights are a sr network x2"):
        build_network(as_style, state)
    wrong_scale = ModelInfo(name="m", kind="sr", arch="johnson_sr", scale=4)
    with pytest.raises(ModelFileError, match="says 'sr x4'"):
        build_network(wrong_scale, state)
    bad_option = ModelInfo(name="m", kind="sr", arch="johnson_sr", scale=2, params={"bicubic_skip": "yes"})
    with pytest.raises(ModelFileError, match="bicubic_skip"):
        build_network(bad_option, state)
    # and the consistent descriptor loads
    assert build_network(ModelInfo(name="m", kind="sr", arch="johnson_sr", scale=2), state).spec.scale == 2
    save_model(tmp_path / "m.safetensors", state, ModelInfo(name="m", kind="sr", arch="johnson_sr", scale=2))
    assert read_info(tmp_path / "m.safetensors").arch == "johnson_sr"


@pytest.mark.parametrize("descriptor", ["3", '"text"', "null", "[1, 2]"])
def test_a_descriptor_that_is_not_a_json_object_is_a_model_file_error(tmp_path: Path, descriptor: str) -> None:
    import struct

    header = json.dumps({"__metadata__": {"impasto": descriptor}}).encode()
    path = tmp_path / "odd.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(ModelFileError, match="malformed metadata"):
        read_info(path)
