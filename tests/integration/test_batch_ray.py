"""`impasto batch --ray` on a local Ray instance with 2 CPUs and 2 model actors.

Skipped when Ray is not installed, unless IMPASTO_REQUIRE_RAY=1 (CI installs impasto[ray] and sets it)."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import numpy as np
import pytest
from impasto.batch import MANIFEST_NAME, TMP_MARK, BatchJob, read_manifest, run_batch
from impasto.cancel import CancelToken
from impasto.imageio import read_image, write_image
from impasto.pixels import PixelBuffer
from impasto.service import EngineConfig
from PIL import Image

pytestmark = pytest.mark.slow
REQUIRE = os.environ.get("IMPASTO_REQUIRE_RAY") == "1"
BUDGET_S = 420  # the whole module: Ray start, three batches, shutdown; a hang fails instead of stalling CI
CONFIG = EngineConfig(device="cpu", bf16=False, max_pixels=5_000)
STYLE = BatchJob("stylize", {"style": "wave"}, CONFIG)
GOOD = ["a.png", "b.jpg", "c.png", "deep/er/e.png", "sub/d.tif"]


def make_tree(root: Path) -> Path:
    """Tiny images in nested folders, a 16-bit TIFF, a corrupt file and one over max_pixels."""
    rng = np.random.default_rng(1)
    src = root / "in"
    for rel, (w, h) in [("a.png", (24, 20)), ("b.jpg", (32, 24)), ("c.png", (20, 20)), ("deep/er/e.png", (28, 24))]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(src / rel)
    write_image(src / "sub" / "d.tif", PixelBuffer.from_array((rng.random((16, 20, 3)) * 65535).astype(np.uint16)))
    (src / "broken.png").write_bytes(b"\x89PNG not really")
    Image.new("RGB", (80, 80)).save(src / "huge.png")
    return src


def stats(out: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(out).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in out.rglob("*") if p.is_file() and p.name != MANIFEST_NAME}


def done_counts(manifest: Path) -> Counter[str]:
    return Counter(r["input"] for r in read_manifest(manifest) if r["status"] == "done")


@pytest.fixture(scope="module")
def ray_local() -> Iterator[object]:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        if REQUIRE:
            pytest.fail(f"IMPASTO_REQUIRE_RAY=1 but Ray is not importable: {exc}")
        pytest.skip(f"Ray is not installed ({exc}); pip install 'impasto[ray]' to run these")

    def too_long(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"the Ray batch tests ran past {BUDGET_S} s")

    previous = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(BUDGET_S)
    # Small on purpose: 2 CPUs (2 actors) and a small object store; only paths and records go through it.
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=96 << 20, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_ray_two_workers_on_a_folder_with_bad_files(ray_local: object, tmp_path: Path, impasto_home: Path) -> None:
    src, out = make_tree(tmp_path), tmp_path / "out"
    summary = run_batch(STYLE, src, out, workers=2, ray="auto")
    assert (summary.done, summary.failed, summary.interrupted) == (5, 2, False)
    assert sorted(stats(out)) == GOOD
    records = {r["input"]: r for r in read_manifest(out / MANIFEST_NAME)}
    assert "cannot read this image" in records["broken.png"]["error"]
    assert "over the limit" in records["huge.png"]["error"]
    d, _ = read_image(out / "sub/d.tif")
    assert d.format.depth == "U16"
    # The Ray actors write what the local pool writes.
    local = tmp_path / "local"
    run_batch(STYLE, src, local, workers=1, threads=1)
    for rel in GOOD:
        a, b = read_image(out / rel)[0].array.astype(int), read_image(local / rel)[0].array.astype(int)
        assert np.abs(a - b).max() <= 1, rel


def test_ray_interrupted_then_resumed(ray_local: object, tmp_path: Path, impasto_home: Path) -> None:
    src, out = make_tree(tmp_path), tmp_path / "out"
    # Enough extra images that an idle machine cannot finish them all before the first record stops the run.
    rng = np.random.default_rng(2)
    extra = [f"more/m{i:02d}.png" for i in range(40)]
    (src / "more").mkdir()
    for rel in extra:
        Image.fromarray((rng.random((24, 24, 3)) * 255).astype(np.uint8)).save(src / rel)
    good = sorted(GOOD + extra)
    cancel = CancelToken()
    first = run_batch(STYLE, src, out, workers=2, ray="auto", cancel=cancel, on_record=lambda rec: cancel.cancel())
    assert first.interrupted
    before = stats(out)
    time.sleep(2)  # the pipeline was stopped: no actor may still be writing
    assert stats(out) == before
    # an actor stopped in the middle of a write leaves its temporary file (never a partial output): the
    # resumed run removes it and redoes that image
    finished = {k: v for k, v in before.items() if TMP_MARK not in k}
    assert len(finished) < len(good)
    second = run_batch(STYLE, src, out, workers=2, ray="auto")
    assert not second.interrupted and second.skipped == len(finished)
    after = stats(out)
    assert sorted(after) == good  # no temporary file left behind
    assert all(after[k] == v for k, v in finished.items())  # finished outputs were not rewritten
    assert done_counts(out / MANIFEST_NAME) == Counter(good)  # each input recorded done once


def test_ray_actor_killed_mid_batch_is_retried(ray_local: object, tmp_path: Path, impasto_home: Path) -> None:
    src, out = make_tree(tmp_path), tmp_path / "out"
    killed: list[int] = []

    def kill_once(rec: dict) -> None:
        if not killed and rec["status"] == "done":
            killed.append(int(rec["worker"].split(":")[1]))
            os.kill(killed[0], signal.SIGKILL)  # as a lost node or the OOM killer would

    summary = run_batch(STYLE, src, out, workers=2, ray="auto", on_record=kill_once)
    assert killed and (summary.done, summary.failed) == (5, 2)  # Ray restarted the actor and retried its images
    assert sorted(stats(out)) == GOOD and done_counts(out / MANIFEST_NAME) == Counter(GOOD)
