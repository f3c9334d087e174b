"""The benchmark scripts still run (each main() with --quick on tiny sizes) and write the JSON the docs are
built from. Benchmarks are not run in CI otherwise, so without this they would rot silently."""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from impasto.device import cpu_has_bf16

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _script(name: str) -> ModuleType:
    # The scripts import their siblings (common, reference) as top-level modules, as when run as files.
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    module = importlib.import_module(name)
    assert Path(module.__file__ or "").parent == BENCH, f"{name} resolved to {module.__file__}, not benchmarks/"
    return module


def _run(name: str, out: Path, *extra: str) -> dict:
    assert _script(name).main(["--quick", "--out-dir", str(out), *extra]) == 0
    report = json.loads((out / f"{name}.json").read_text())
    assert _script("tables").main([str(out)]) == 0  # the docs' table renderer reads this JSON
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return report  # the scripts skip the plot without matplotlib
    assert (out / f"{name}.png").stat().st_size > 1000
    return report


def _has(d: dict, *keys: str) -> None:
    missing = [k for k in keys if k not in d]
    assert not missing, f"missing keys {missing} in {sorted(d)}"


@pytest.mark.usefixtures("shared")
def test_stylize_speed(tmp_path: Path) -> None:
    r = _run("stylize_speed", tmp_path)
    _has(r, "machine", "weights", "rows", "compile", "goal", "trained_weights_check", "load_average_before_after")
    _has(r["machine"], "device_name", "cpu", "load_average_1min")
    configs = {row["config"] for row in r["rows"]}
    assert {"reference", "fp32", "fp32 tiled"} <= configs
    # emulated bf16 (a CPU without AVX512-BF16/AMX) is left out: the engine runs fp32 there
    assert ({"bf16", "bf16 tiled"} <= configs) == cpu_has_bf16() and ("bf16" in configs) == cpu_has_bf16()
    for row in r["rows"]:
        _has(row, "size", "config", "median_s", "peak_mib", "speedup_vs_reference", "max_diff_pct", "p999_diff_pct")
        if row["config"].startswith("fp32"):  # ours in fp32, whole or tiled, is the reference computation
            assert row["max_diff_pct"] < 0.01, row


def test_measure_stops_adding_runs_after_max_seconds() -> None:
    common = _script("common")
    calls: list[int] = []

    def slow() -> int:
        calls.append(1)
        time.sleep(0.05)
        return len(calls)

    capped = common.measure(slow, "cpu", runs=10, warmup=1, max_s=0.12)
    # one warm-up, then timed runs until their sum reached 0.12 s: three of ~0.05 s (a loaded machine: fewer)
    assert 1 <= len(capped["all_s"]) <= 3 and sum(capped["all_s"][:-1]) < 0.12 <= sum(capped["all_s"])
    assert capped["result"] == len(calls) == 1 + len(capped["all_s"])
    assert len(common.measure(slow, "cpu", runs=4, warmup=0)["all_s"]) == 4  # no cap: every run


@pytest.mark.usefixtures("shared")
def test_tiled_speed(tmp_path: Path) -> None:
    r = _run("tiled_speed", tmp_path)
    _has(r, "machine", "model", "size", "tile", "rows", "diff", "load_average_before_after")
    configs = {row["config"] for row in r["rows"]}
    assert "torch fp32" in configs
    assert ("torch bf16" in configs) == cpu_has_bf16()  # emulated bf16 is not run: the engine would not use it
    for row in r["rows"]:
        _has(row, "config", "median_s", "peak_mib", "speedup_vs_torch", "max_levels", "p999_levels")
        if row["config"] in ("torch fp32", "openvino f32"):  # the exact path on either runtime
            assert row["max_levels"] < 0.05, row


def test_tiled_memory(tmp_path: Path) -> None:
    assert _script("tiled_memory").main(["--quick", "--out-dir", str(tmp_path), "--memory-budget", "0.001"]) == 0
    r = json.loads((tmp_path / "tiled_memory.json").read_text())
    _has(r, "machine", "size", "tile", "rows", "load_average_before_after")
    for row in r["rows"]:
        _has(row, "config", "ran_on", "stylize_s", "peak_rss_mib")
        assert row["peak_rss_mib"] > 50, row


@pytest.mark.usefixtures("shared")
def test_gatys_speed(tmp_path: Path) -> None:
    r = _run("gatys_speed", tmp_path)
    _has(r, "machine", "rows", "load_average_before_after")
    impls = {row["implementation"] for row in r["rows"]}
    assert impls == {"reference", "impasto.train.gatys"}
    for row in r["rows"]:
        _has(row, "size", "implementation", "s_per_iteration", "first_loss", "speedup_vs_reference")
        if row["implementation"] == "impasto.train.gatys":  # both loops optimise the same objective
            assert row["first_loss_rel_diff"] < 1e-4, row


@pytest.mark.usefixtures("shared")
def test_speed_quality(tmp_path: Path) -> None:
    r = _run("speed_quality", tmp_path, "--gatys-runs", "2")
    _has(r, "machine", "pairs", "iterations", "load_average_before_after")
    pair = r["pairs"][0]
    _has(pair, "content", "style", "feedforward", "gatys", "speedup_at_equal_loss")
    _has(pair["feedforward"], "time_s", "loss")
    assert set(pair["gatys"]) == {"content", "noise", "feedforward"}
    for curve in pair["gatys"].values():
        _has(curve, "history", "times_s", "reach_iteration", "reach_time_s", "final_loss")
        assert len(curve["history"]) == len(curve["times_s"]) == r["iterations"] + 1
        assert curve["times_s"] == sorted(curve["times_s"])
    # Gatys started from the feed-forward output starts at the feed-forward loss
    assert pair["gatys"]["feedforward"]["history"][0] == pytest.approx(pair["feedforward"]["loss"], rel=1e-4)
    # only networks we trained, each scored on the objective it was trained on (a converted one has none)
    own = _script("speed_quality").own_styles()
    assert own and r["styles"] == own[:1]
    for p in r["pairs"]:
        assert p["style"] in own and p["objective"]["loss_net"] == "vgg19-partial" and p["objective"]["content_layer"]
    # loading is out of both times: the Gatys runs found the loss network already in gatys's cache
    assert r["loss_net_loads_while_timed"] == 0
    for init, curve in pair["gatys"].items():  # every run kept; the curve's times are their per-iteration medians
        assert r["gatys_runs"] == 2 and len(curve["runs"]) == (1 if init == "feedforward" else 2)
        assert curve["histories_agree"] is True  # the same start gives the same losses
        first, *more = curve["runs"]
        assert len(first["history"]) == len(first["times_s"]) == r["iterations"] + 1
        assert curve["history"] == first["history"]
        for run in more:  # the repeats time the race: they stop where the first run reached the network's loss
            k = curve["reach_iteration"]
            assert len(run["times_s"]) == (r["iterations"] if k is None else max(k, 1)) + 1
    for init in ("content", "noise"):
        s = r["summary"][init]
        _has(s, "median", "q1", "q3", "iqr", "min", "max", "pairs", "not_reached", "not_reached_pairs", "per_style")
        assert s["min"] <= s["q1"] <= s["median"] <= s["q3"] <= s["max"]
        assert s["iqr"] == pytest.approx(s["q3"] - s["q1"])
        assert s["pairs"] == len(r["pairs"]) and set(s["per_style"]) == set(r["styles"])
        missed = [p for p in r["pairs"] if p["gatys"][init]["reach_iteration"] is None]
        assert s["not_reached"] == len(missed) == len(s["not_reached_pairs"])  # counted, not dropped
        for p in r["pairs"]:
            c = p["gatys"][init]
            if c["reach_iteration"] is None:
                assert c["speedup_at_equal_loss"] is None and c["speedup_lower_bound"] > 0
            else:
                assert c["speedup_at_equal_loss"] == pytest.approx(c["reach_time_s"] / p["feedforward"]["time_s"])


@pytest.mark.usefixtures("shared")
def test_refine_speed(tmp_path: Path) -> None:
    r = _run("refine_speed", tmp_path)
    _has(r, "machine", "speed", "curves", "load_average_before_after")
    for style in r["speed"]["styles"].values():
        _has(style, "start_loss", "rows", "feedforward_wall_s", "engine_stylize_refine_s")
        assert style["rows"]["full-fp32"]["vs_full_fp32"] == 1.0
        for row in style["rows"].values():
            _has(row, "wall_s", "cpu_s", "evaluations", "loss", "vs_full_fp32", "vs_start", "load_average")
    for run in r["curves"]["runs"]:
        assert run["falls_every_step"] and len(run["history"]) == r["curves"]["iterations"] + 1
    if (tmp_path / "refine_speed.png").exists():  # with matplotlib: the curves and crops land in --out-dir
        assert (tmp_path / "refine-curves.png").exists() and (tmp_path / "refine-crops.png").exists()


def test_transport(tmp_path: Path) -> None:
    r = _run("transport", tmp_path)
    _has(r, "machine", "runs", "medians_s", "all_s")
    for med in r["medians_s"].values():
        _has(med, "memory_copy_s", "grpcio_client_s", "pure_python_client_s")


@pytest.mark.usefixtures("shared")
def test_sr_speed(tmp_path: Path) -> None:
    r = _run("sr_speed", tmp_path)
    _has(r, "machine", "model", "scale", "size", "rows", "goal", "load_average_before_after")
    assert r["rows"][0]["config"] == "eager fp32" and r["rows"][0]["speedup_vs_eager"] == 1.0
    from impasto.engine import runtime

    if runtime.openvino_version() is not None:  # the CPU's fast runtime, beside the reference
        assert "openvino f32" in {row["config"] for row in r["rows"]}
    for row in r["rows"]:
        _has(row, "config", "median_s", "runs", "peak_mib", "speedup_vs_eager", "max_levels", "p999_levels")
        if row["config"].endswith("f32"):  # the same computation in f32 on another runtime
            assert row["max_levels"] < 1.0, row


@pytest.mark.usefixtures("shared")
def test_cli_speed(tmp_path: Path) -> None:
    r = _run("cli_speed", tmp_path)
    _has(r, "machine", "style", "rows", "median_speedup", "goal", "load_average_before_after")
    (row,) = r["rows"]
    _has(row, "width", "height", "process_s", "reference_forward_s", "speedup_vs_reference_forward")
    assert row["process_s"] > 0 and row["reference_forward_s"] > 0
    # the process wrote the style network's picture: the reference's, to rounding (OpenVINO f32 against torch)
    assert row["max_diff_levels"] <= 2.0, row
