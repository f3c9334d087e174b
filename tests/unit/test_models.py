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
