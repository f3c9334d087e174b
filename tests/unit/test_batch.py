"""`impasto batch` in local mode: the walk, the manifest, error isolation, resuming, the worker pool, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from batch_tree import CONFIG, GOOD, STYLE, done_counts, make_tree, stats
from impasto.batch.job import MANIFEST_NAME, TMP_MARK, BatchJob, plan, read_manifest
from impasto.batch.local import cpu_threads, local_slots
from impasto.batch.run import run_batch
from impasto.cancel import CancelToken
from impasto.cli import main
from impasto.engine.engine import EngineConfig
from impasto.engine.imageio import read_image
from PIL import Image


def test_plan_walks_nested_folders_and_leaves_out_noise(tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    (src / "out" / "x.png").parent.mkdir()
    Image.new("RGB", (8, 8)).save(src / "out" / "x.png")  # an output folder inside the input is not walked
    tasks = plan(src, src / "out", "webp")
    assert [t.rel for t in tasks] == ["a.png", "b.jpg", "broken.png", "c.png", "deep/er/e.png", "huge.png",
                                      "sub/d.tif"]
    assert tasks[4].dst == str((src / "out" / "deep/er/e.webp").resolve())
    assert plan(src, tmp_path / "o")[1].dst.endswith("b.jpg")  # no --format: each input's own


def test_cpu_workers_default_to_one_single_threaded_worker_per_core() -> None:
    cores = os.cpu_count() or 1
    assert local_slots(CONFIG, None) == ["cpu"] * cores  # this machine has memory for a worker per core
    assert local_slots(CONFIG, cores + 5) == ["cpu"] * cores  # bounded by the cores
    assert cpu_threads(cores, None) == 1 and cpu_threads(1, None) == cores and cpu_threads(1, 3) == 3
    assert local_slots(EngineConfig(device="cpu"), 1) == ["cpu"]


def test_folder_with_corrupt_file_and_nested_folders(tmp_path: Path, impasto_home: Path) -> None:
    src, out = make_tree(tmp_path), tmp_path / "out"
    summary = run_batch(STYLE, src, out, workers=1, threads=1)
    assert (summary.done, summary.failed, summary.skipped, summary.interrupted) == (5, 2, 0, False)
    assert sorted(stats(out)) == GOOD  # no temporary files left behind
    assert Image.open(out / "deep/er/e.png").size == (28, 24)
    d, _ = read_image(out / "sub/d.tif")
    assert d.format.depth == "U16" and d.array.shape == (16, 20, 3)
    records = {r["input"]: r for r in read_manifest(out / MANIFEST_NAME)}
    assert "cannot read this image" in records["broken.png"]["error"]
    assert "over the limit" in records["huge.png"]["error"]
    assert records["a.png"]["status"] == "done" and records["a.png"]["seconds"] > 0
    assert records["a.png"]["settings"]["style"] == "wave" and records["a.png"]["time"]


def test_interrupted_then_resumed_loses_nothing_and_repeats_nothing(tmp_path: Path, impasto_home: Path) -> None:
    src, out = make_tree(tmp_path), tmp_path / "out"
    cancel = CancelToken()

    def stop_after_two(rec: dict) -> None:
        if sum(done_counts(out / MANIFEST_NAME).values()) >= 2:
            cancel.cancel()

    first = run_batch(STYLE, src, out, cancel=cancel, on_record=stop_after_two, workers=1, threads=1)
    assert first.interrupted and first.done == 2
    before = stats(out)
    assert len(before) == 2
    second = run_batch(STYLE, src, out, workers=1, threads=1)
    assert (second.done, second.skipped, second.interrupted) == (3, 2, False)
    after = stats(out)
    assert sorted(after) == GOOD
    assert all(after[k] == v for k, v in before.items())  # finished outputs were not rewritten
    assert done_counts(out / MANIFEST_NAME) == Counter(GOOD)  # each computed exactly once
    # Nothing left but the two bad files, tried again and reported again.
    third = run_batch(STYLE, src, out, workers=1, threads=1)
    assert (third.done, third.skipped, third.failed) == (0, 5, 2) and stats(out) == after


def test_outputs_of_a_killed_run_are_found_not_recomputed(tmp_path: Path, impasto_home: Path) -> None:
    src, out = make_tree(tmp_path), tmp_path / "out"
    run_batch(STYLE, src, out, workers=1, threads=1)
    before = stats(out)
    manifest = out / MANIFEST_NAME
    # A run killed hard: its manifest lost the last records (one cut mid-line), and a temp file was left.
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(lines[:3]) + "\n" + lines[3][:25])
    leftover = out / "sub" / f".d{TMP_MARK}dead.tif"
    leftover.write_bytes(b"half")
    again = run_batch(STYLE, src, out, workers=1, threads=1)
    assert (again.done, again.skipped) == (0, 5) and not leftover.exists()
    assert stats(out) == before
    assert done_counts(manifest) == Counter(GOOD)
    assert {r["worker"] for r in read_manifest(manifest)[3:] if r["status"] == "done"} == {"found"}


def test_other_settings_are_refused_unless_overwrite(tmp_path: Path, impasto_home: Path) -> None:
    src, out = make_tree(tmp_path), tmp_path / "out"
    job = BatchJob("upscale", {"scale": 2, "model": "bicubic"}, CONFIG, "png")
    run_batch(job, src, out, workers=1, threads=1)
    assert Image.open(out / "b.png").size == (64, 48)
    other = BatchJob("upscale", {"scale": 2, "model": "srgan-x2"}, CONFIG, "png")
    with pytest.raises(Exception, match="other settings .model 'bicubic' then, 'srgan-x2' now"):
        run_batch(other, src, out, workers=1, threads=1)
    before = stats(out)
    bicubic = read_image(out / "b.png")[0].array
    summary = run_batch(other, src, out, overwrite=True, workers=1, threads=1)
    assert summary.done == 5 and summary.skipped == 0
    assert not np.array_equal(read_image(out / "b.png")[0].array, bicubic)
    assert all(stats(out)[k] != v for k, v in before.items())


def test_format_collisions_are_reported_not_overwritten(tmp_path: Path, impasto_home: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (16, 16), "red").save(src / "x.png")
    Image.new("RGB", (16, 16), "blue").save(src / "x.tif")
    job = BatchJob("upscale", {"scale": 2, "model": "bicubic"}, CONFIG, "jpg")
    summary = run_batch(job, src, tmp_path / "out", workers=1, threads=1)
    assert (summary.done, summary.failed) == (1, 1)
    assert "also the output of x.png" in summary.errors[0][1]
    assert read_image(tmp_path / "out" / "x.jpg")[0].array[0, 0, 0] > 200  # red: x.png's


@pytest.mark.slow
def test_two_local_workers_then_resume(tmp_path: Path, impasto_home: Path) -> None:
    src, out = make_tree(tmp_path), tmp_path / "out"
    cancel = CancelToken()

    def stop(rec: dict) -> None:
        cancel.cancel()  # after the first record: work in flight is finished and recorded, nothing new starts

    first = run_batch(STYLE, src, out, workers=2, cancel=cancel, on_record=stop)
    assert first.interrupted
    workers = {r["worker"] for r in read_manifest(out / MANIFEST_NAME)}
    before = stats(out)
    assert 1 <= len(before) < 5
    second = run_batch(STYLE, src, out, workers=2)
    assert second.skipped == len(before) and second.done == 5 - len(before) and second.failed == 2
    after = stats(out)
    assert sorted(after) == GOOD and all(after[k] == v for k, v in before.items())
    assert done_counts(out / MANIFEST_NAME) == Counter(GOOD)
    workers |= {r["worker"] for r in read_manifest(out / MANIFEST_NAME)}
    assert len({w.split(":")[1] for w in workers if w != "found"}) >= 2  # separate processes did the work
    # Two worker processes write the same pixels as one in-process worker (one thread each vs two: tiny drift).
    solo = tmp_path / "solo"
    run_batch(STYLE, src, solo, workers=1, threads=1)
    for rel in ("a.png", "deep/er/e.png"):
        a, b = read_image(out / rel)[0].array.astype(int), read_image(solo / rel)[0].array.astype(int)
        assert np.abs(a - b).max() <= 1


def test_cli_batch(tmp_path: Path, impasto_home: Path, capsys: pytest.CaptureFixture) -> None:
    src, out = make_tree(tmp_path), tmp_path / "out"
    manifest = tmp_path / "m.jsonl"
    rc = main(["batch", "upscale", str(src), str(out), "--scale", "2", "--model", "bicubic", "--format", "png",
               "--manifest", str(manifest), "--device", "cpu", "--max-pixels", "5000", "--workers", "1",
               "--threads", "1"])
    captured = capsys.readouterr()
    assert rc == 1  # two bad files: reported, the rest done
    assert "5 done, 0 already finished, 2 failed" in captured.out
    assert "skipped broken.png" in captured.err
    assert Image.open(out / "sub" / "d.png").size == (40, 32) and not (out / MANIFEST_NAME).exists()
    assert len(read_manifest(manifest)) == 7
    assert main(["batch", "stylize", str(src), str(out), "--style", "monet"]) == 1
    assert "unknown style 'monet'" in capsys.readouterr().err
    assert main(["batch", "upscale", str(src), str(out), "--scale", "4", "--model", "srgan-x2"]) == 1
    assert "upscales x2, not x4" in capsys.readouterr().err


def test_cli_batch_without_ray_says_what_to_install(tmp_path: Path, impasto_home: Path,
                                                    capsys: pytest.CaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_tree(tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main(["batch", "stylize", str(src), str(tmp_path / "out"), "--style", "wave", "--ray", "auto"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "impasto: error: --ray needs Ray, which is not installed"
    assert "install impasto[ray]" in err[1]


def test_manifest_is_jsonl_with_one_record_per_line(tmp_path: Path, impasto_home: Path) -> None:
    src, out = make_tree(tmp_path), tmp_path / "out"
    run_batch(BatchJob("upscale", {"scale": 2, "model": "bicubic"}, CONFIG), src, out, workers=1, threads=1)
    lines = (out / MANIFEST_NAME).read_text().splitlines()
    assert len(lines) == 7
    for line in lines:
        rec = json.loads(line)
        assert set(rec) >= {"input", "output", "status", "seconds", "cpu_seconds", "time", "error", "worker"}
        assert os.path.isabs(rec["output"])


@pytest.mark.slow
def test_a_worker_killed_mid_batch_costs_only_its_images(tmp_path: Path, impasto_home: Path) -> None:
    src, out = make_tree(tmp_path), tmp_path / "out"
    killed: list[int] = []

    def kill_once(rec: dict) -> None:
        if not killed and rec["worker"].count(":") == 2:
            killed.append(int(rec["worker"].split(":")[1]))
            os.kill(killed[0], signal.SIGKILL)  # as the kernel's OOM killer would

    first = run_batch(STYLE, src, out, workers=2, threads=1, on_record=kill_once)
    lost = [rel for rel, error in first.errors if "worker process died" in error]
    # Usually the dead worker had images in hand (lost); under load all results may be in before the kill.
    assert killed and not first.interrupted
    assert {rel for rel, _ in first.errors} == {"broken.png", "huge.png", *lost}
    assert first.done + first.failed == 7  # every input accounted for: the rest went on in a new pool
    before = stats(out)
    # The killed worker may have renamed an output into place just before it died: that one is found next time.
    assert set(GOOD) - set(lost) <= set(before) <= set(GOOD)
    second = run_batch(STYLE, src, out, workers=1, threads=1)
    assert second.done == len(set(GOOD) - set(before)) and second.skipped == len(before)
    after = stats(out)
    assert sorted(after) == GOOD and all(after[k] == v for k, v in before.items())
    assert done_counts(out / MANIFEST_NAME) == Counter(GOOD)


DRIVER = """
import sys
from pathlib import Path
from impasto.batch.job import BatchJob
from impasto.batch.run import run_batch
from impasto.engine.engine import EngineConfig

job = BatchJob("upscale", {"scale": 8, "model": "bicubic"}, EngineConfig(device="cpu", bf16=False))
run_batch(job, Path(sys.argv[1]), Path(sys.argv[2]), workers=2, threads=1)
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"  # a zombie is dead, its memory freed
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads worker states from /proc")
@pytest.mark.parametrize("sig", [pytest.param(signal.SIGKILL, id="SIGKILL"),
                                 pytest.param(signal.SIGTERM, id="SIGTERM", marks=pytest.mark.slow)])
def test_workers_die_with_a_killed_driver(tmp_path: Path, sig: signal.Signals) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(200):  # far more than the workers finish before they are seen at work
        Image.fromarray((rng.random((128, 128, 3)) * 255).astype(np.uint8)).save(src / f"{i:03}.png")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "backend"))
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(src), str(out)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        workers: set[int] = set()
        deadline = time.monotonic() + 180
        while len(workers) < 2:  # both workers have run their initializer and finished an image
            assert driver.poll() is None and time.monotonic() < deadline, "the batch ended or never started"
            time.sleep(0.1)
            workers = {int(r["worker"].split(":")[1]) for r in read_manifest(out / MANIFEST_NAME)}
        assert driver.poll() is None
        driver.send_signal(sig)
        driver.wait(30)
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [pid for pid in workers if alive(pid)]
        for pid in left:  # do not leave them behind on failure either
            os.kill(pid, signal.SIGKILL)
        assert not left, f"workers {left} outlived their driver"
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
