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
from batch_tree import GOOD, STYLE, done_counts, make_tree, stats
from impasto.batch.job import MANIFEST_NAME, TMP_MARK, read_manifest
from impasto.batch.run import run_batch
from impasto.cancel import CancelToken
from impasto.engine.imageio import read_image
from PIL import Image

pytestmark = pytest.mark.slow
REQUIRE = os.environ.get("IMPASTO_REQUIRE_RAY") == "1"
BUDGET_S = 420  # the whole module: Ray start, three batches, shutdown; a hang fails instead of stalling CI


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
