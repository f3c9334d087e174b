"""Model files, the store, converters and their failure modes."""

from __future__ import annotations

import hashlib
import http.server
import os
import pickle
import threading
import time
from pathlib import Path

import pytest
import torch
from impasto.errors import InvalidArgument, ModelFileError, NotFound, Unavailable
from impasto.models.pull import pull
from impasto.models.store import ModelStore


def test_bundled_models_are_listed() -> None:
    store = ModelStore(user_dir=Path("/nonexistent"))
    assert {"scream", "wave", "wreck", "udnie"} <= set(store.names("style"))
    assert {(m.name, m.scale) for m in store.list("sr")} >= {("srgan-x2", 2), ("srgan-x4", 4), ("srgan-x8", 8)}
    for m in store.list():
        assert m.bundled and m.license == "MIT" and m.attribution and len(m.sha256) == 64
        assert m.thumbnail_png and m.thumbnail_png.startswith(b"\x89PNG")
    total = sum(m.path.stat().st_size for m in store.list() if m.path)
    assert total < 60 * 2**20


def test_unknown_model_lists_available(impasto_home: Path) -> None:
    with pytest.raises(NotFound) as err:
        ModelStore().get("monet", "style")
    assert "scream" in err.value.message and "wave" in err.value.message


def test_import_all_foreign_formats_and_remove(shared: Path, impasto_home: Path) -> None:
    store = ModelStore()
    reduced = shared / "weights/style_nets/pytorch_examples_reduced/saved_models_nc16"
    a = store.import_path(reduced / "candy_nc16_b1_e2_1e05_1e10.model", "candy")
    assert (a.kind, a.arch, a.params["widths"]) == ("style", "johnson", [16, 32, 64])
    b = store.import_path(shared / "weights/style_nets/ml5_engstrom/wreck", "wreck2")
    assert (b.kind, b.arch) == ("style", "engstrom")
    c = store.import_path(shared / "weights/sr/srgan/netG_epoch_4_100.pth", "sr4")
    assert (c.kind, c.scale) == ("sr", 4)
    d = store.import_path(a.path, "candy-copy")  # our own format re-imports
    assert d.arch == "johnson"
    net = store.load("candy")
    assert net(torch.rand(1, 3, 16, 16) * 255).shape == (1, 3, 16, 16)
    with pytest.raises(InvalidArgument, match="already exists"):
        store.import_path(shared / "weights/sr/srgan/netG_epoch_4_100.pth", "sr4")
    store.remove("candy")
    assert "candy" not in store.names()
    with pytest.raises(InvalidArgument, match="bundled"):
        store.remove("scream")


def test_corrupt_safetensors_is_reported_and_skipped(impasto_home: Path) -> None:
    folder = impasto_home / "models"
    folder.mkdir(parents=True)
    (folder / "broken.safetensors").write_bytes(b"\xff" * 64)
    store = ModelStore()
    assert "broken" not in store.names()
    assert "broken.safetensors" in store.broken
    with pytest.raises(ModelFileError):
        store.import_path(folder / "broken.safetensors", "x")


def test_truncated_weights_give_a_clear_error(impasto_home: Path, shared: Path) -> None:
    store = ModelStore()
    info = store.import_path(shared / "weights/sr/srgan/netG_epoch_2_100.pth", "sr2")
    data = info.path.read_bytes()
    info.path.write_bytes(data[: len(data) // 2])
    assert "sr2" not in store.names()
    assert "sr2.safetensors" in store.broken  # reported by `models list`, never loaded
    from impasto.models.fileformat import load_state

    with pytest.raises(ModelFileError, match="sr2.safetensors"):
        load_state(info.path)


class _Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {os.environ['EVIL_MARKER']}",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path, impasto_home: Path, monkeypatch) -> None:
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    evil = tmp_path / "evil.pth"
    torch.save({"conv1.conv2d.weight": torch.zeros(1), "payload": _Evil()}, evil, pickle_protocol=2)
    raw = tmp_path / "raw.pth"
    raw.write_bytes(pickle.dumps(_Evil()))
    for path in (evil, raw):
        with pytest.raises(ModelFileError, match="refused"):
            ModelStore().import_path(path, "evil")
    assert not marker.exists()


def test_pull_fails_fast_and_clearly_when_offline(impasto_home: Path) -> None:
    entries = {"x": {"url": "http://127.0.0.1:9/x.pth", "sha256": "0" * 64, "license": "MIT"}}
    t0 = time.monotonic()
    with pytest.raises(Unavailable, match="cannot download"):
        pull(ModelStore(), "x", entries=entries)
    assert time.monotonic() - t0 < 5
    with pytest.raises(NotFound):
        pull(ModelStore(), "nope", entries=entries)


def test_pull_verifies_the_checksum(shared: Path, impasto_home: Path, tmp_path: Path) -> None:
    src = shared / "weights/sr/srgan/netG_epoch_2_100.pth"
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "g.pth").write_bytes(src.read_bytes())
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path / "www"), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/g.pth"
        good = hashlib.sha256(src.read_bytes()).hexdigest()
        with pytest.raises(InvalidArgument, match="checksum mismatch"):
            pull(ModelStore(), "g", entries={"g": {"url": url, "sha256": "1" * 64, "license": ""}})
        assert "g" not in ModelStore().names()
        info = pull(ModelStore(), "g", entries={"g": {"url": url, "sha256": good, "license": ""}})
        assert info.kind == "sr" and info.scale == 2
    finally:
        httpd.shutdown()


def test_training_refuses_a_taken_name_before_it_starts(impasto_home: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    from impasto.cli import main

    data = tmp_path / "photos"
    data.mkdir()
    # a bundled name is refused up front (the data folder is empty, so training would fail anyway if it started)
    assert main(["train", "sr", "--data", str(data), "--name", "srgan-x4", "--iterations", "1"]) == 1
    assert "bundled model named 'srgan-x4' already exists" in capsys.readouterr().err


# ---- bad descriptors: skipped and reported, never an error for everyone (issue 14, item 4) ----

BUNDLED = Path(__file__).resolve().parents[2] / "backend/impasto/data/models"


def tiny_png(width: int, height: int) -> bytes:
    """A 1-bit PNG of any size in a few hundred bytes (built by hand: Pillow would allocate it)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    body = b"".join(z.compress(bytes(1 + (width + 7) // 8) * min(1000, height - y)) for y in range(0, height, 1000))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body + z.flush()) + chunk(b"IEND", b"")


def write_descriptor(path: Path, *, raw: str | None = None, thumbnail: bytes | None = None, **fields: object) -> Path:
    """A model file whose descriptor is srgan-x2's with `fields` changed (or `raw` as the whole metadata)."""
    import base64
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(BUNDLED / "srgan-x2.safetensors"), framework="pt") as f:
        meta = dict(f.metadata())
    meta["impasto"] = raw if raw is not None else json.dumps(json.loads(meta["impasto"]) | fields)
    if thumbnail is not None:
        meta["thumbnail_png"] = base64.b64encode(thumbnail).decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": torch.zeros(1)}, str(path), metadata=meta)
    return path


BAD_DESCRIPTORS = {  # file stem -> (how it is bad, what the report must name)
    "scale-negative": ({"scale": -1}, "scale '-1' is not one of 2, 4, 8"),
    "scale-text": ({"scale": "x"}, "scale 'x' is not one of"),
    "scale-bool": ({"scale": True}, "scale 'True' is not one of"),
    "style-x4": ({"kind": "style", "scale": 4}, "for a style model"),
    "name-number": ({"name": 123}, "name is a int, not text"),
    "name-rule": ({"name": "../../etc/passwd"}, "invalid model name"),
    "name-long": ({"name": "a" * 5000}, "name is 5,000 characters"),
    "description-long": ({"description": "d" * 100_000}, "description is 100,000 characters"),
    "kind-list": ({"kind": ["sr"]}, "kind"),
    "params-text": ({"params": "x"}, "params is a str, not an object"),
    "training-big": ({"training": {"k": "v" * 200_000}}, "training is 200,009 bytes of JSON"),
    "tiling-text": ({"tiling_exact": "yes"}, "tiling_exact is a str"),
    "meta-list": ({"raw": "[]"}, "malformed metadata"),
    "meta-string": ({"raw": '"x"'}, "malformed metadata"),
    "meta-null": ({"raw": "null"}, "malformed metadata"),
    "meta-deep": ({"raw": "[" * 100_000 + "]" * 100_000}, "malformed metadata"),
    "thumb-huge-file": ({"thumbnail": b"\x89PNG\r\n\x1a\n" + bytes(17 << 20)}, "metadata header is"),
    "thumb-bytes": ({"thumbnail": b"\x89PNG\r\n\x1a\n" + bytes(300 << 10)}, "thumbnail_png is 307,208 bytes"),
    "thumb-pixels": ({"thumbnail": tiny_png(5_000, 3_000)}, "thumbnail_png is 5000x3000 pixels"),
    "thumb-bomb": ({"thumbnail": tiny_png(20_000, 20_000)}, "over the limit of 512x512"),
    "thumb-not-png": ({"thumbnail": b"GIF89a" + bytes(100)}, "thumbnail_png is not a PNG image"),
}


def write_bad_store(folder: Path) -> None:
    for stem, (spec, _) in BAD_DESCRIPTORS.items():
        spec = dict(spec)
        write_descriptor(folder / f"{stem}.safetensors", raw=spec.pop("raw", None),  # type: ignore[arg-type]
                         thumbnail=spec.pop("thumbnail", None), **{"name": stem} | spec)  # type: ignore[arg-type]


def test_bad_descriptors_are_skipped_and_reported(impasto_home: Path) -> None:
    write_bad_store(impasto_home / "models")
    write_descriptor(impasto_home / "models" / "fine.safetensors", name="fine")  # a good one among them
    store = ModelStore()
    models = store.list()  # sorts by (kind, scale, name): every one of those must have its type
    assert {"scream", "srgan-x2", "fine"} <= {m.name for m in models}
    assert not set(BAD_DESCRIPTORS) & {m.name for m in models}
    for stem, (_, expected) in BAD_DESCRIPTORS.items():
        assert expected in store.broken[f"{stem}.safetensors"], (stem, store.broken.get(f"{stem}.safetensors"))


@pytest.mark.parametrize("stem", ["scale-negative", "name-number", "thumb-bytes", "thumb-huge-file", "meta-list"])
def test_import_refuses_a_bad_descriptor_up_front(tmp_path: Path, impasto_home: Path, stem: str) -> None:
    spec = dict(BAD_DESCRIPTORS[stem][0])
    path = write_descriptor(tmp_path / f"{stem}.safetensors", raw=spec.pop("raw", None),  # type: ignore[arg-type]
                            thumbnail=spec.pop("thumbnail", None), **spec)  # type: ignore[arg-type]
    with pytest.raises(ModelFileError, match=BAD_DESCRIPTORS[stem][1].split("'")[0]):
        ModelStore().import_path(path, "x")
    assert "x" not in ModelStore().names()


def test_list_models_over_grpc_answers_with_bad_files_in_the_store(impasto_home: Path) -> None:
    from impasto.engine.engine import Engine, EngineConfig
    from impasto.serve.client import Client
    from impasto.serve.server import ImpastoServer, ServerConfig

    write_bad_store(impasto_home / "models")
    server = ImpastoServer(Engine(EngineConfig(device="cpu", bf16=False)), ServerConfig("127.0.0.1:0", grace=0.5))
    server.start()
    try:
        with Client(server.address, timeout=30) as client:
            names = {m.name for m in client.models()}
            assert {"scream", "udnie", "srgan-x4"} <= names and not set(BAD_DESCRIPTORS) & names
            assert {m.name for m in client.models("sr")} >= {"srgan-x2"}
            assert client.info().device
    finally:
        server.stop()


def test_models_list_cli_warns_about_bad_files(impasto_home: Path, capsys: pytest.CaptureFixture) -> None:
    from impasto.cli import main

    write_bad_store(impasto_home / "models")
    assert main(["models", "list"]) == 0
    out, err = capsys.readouterr()
    assert "scream" in out and "skipped scale-negative.safetensors" in err
    assert all(len(line) < 400 for line in err.splitlines())  # reasons are short, not the file's contents


# ---- trained models carry no absolute paths (issue 14, item 12) ----


def test_bundled_descriptors_hold_no_absolute_paths() -> None:
    import json

    from safetensors import safe_open

    def strings(v: object) -> list[str]:
        if isinstance(v, dict):
            return [s for x in v.values() for s in strings(x)]
        if isinstance(v, list):
            return [s for x in v for s in strings(x)]
        return [v] if isinstance(v, str) else []

    home = str(Path.home())
    for path in sorted(BUNDLED.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()["impasto"]
        for s in strings(json.loads(meta)):
            assert not s.startswith(("/", "~", "\\")) and ":\\" not in s, (path.name, s)
            assert "/tmp/" not in s and "/work/" not in s and home not in s, (path.name, s)


def test_saved_models_strip_the_trainers_paths(impasto_home: Path) -> None:
    from impasto.models.fileformat import load_state, read_info

    src = BUNDLED / "impasto-sr-x4.safetensors"
    info = read_info(src)
    info.training = {"data": "/home/ann/photos/train", "out_dir": "/tmp/runs/x4", "vgg16_weights": None,
                     "style_image": "C:\\Users\\ann\\art\\starry.jpg", "recipe": "docs/models/x.md",
                     "nested": {"resume": "~/runs/x4/latest.pth", "up": "../../secret/run"}}
    info.source = "/home/ann/runs/x4"
    saved = ModelStore().save("mine", load_state(src), info)
    again = read_info(saved.path)  # type: ignore[arg-type]
    assert again.training == {"data": "train", "out_dir": "x4", "vgg16_weights": None, "style_image": "starry.jpg",
                              "recipe": "docs/models/x.md", "nested": {"resume": "latest.pth", "up": "run"}}
    assert again.source == "x4"
