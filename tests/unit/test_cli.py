"""The CLI, run in-process through main(argv)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from impasto.cli import main
from impasto.engine.imageio import read_image
from PIL import Image

SAMPLE = Path(__file__).resolve().parents[2] / "backend/impasto/data/samples/chelsea.png"


def test_models_list(capsys: pytest.CaptureFixture, impasto_home: Path) -> None:
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("scream", "wave", "wreck", "udnie", "srgan-x4"):
        assert name in out
    assert main(["models", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {d["name"] for d in data} >= {"scream", "srgan-x8"}


def test_stylize_and_upscale_files(tmp_path: Path, impasto_home: Path) -> None:
    src = tmp_path / "in.png"
    Image.open(SAMPLE).resize((48, 36)).save(src)
    assert main(["stylize", str(src), str(tmp_path / "s.jpg"), "--style", "scream", "-q"]) == 0
    assert Image.open(tmp_path / "s.jpg").size == (48, 36)
    assert main(["upscale", str(src), str(tmp_path / "u.png"), "--scale", "2", "-q"]) == 0
    assert Image.open(tmp_path / "u.png").size == (96, 72)


def test_folder_in_folder_out(tmp_path: Path, impasto_home: Path) -> None:
    (tmp_path / "in" / "sub").mkdir(parents=True)
    Image.new("RGB", (20, 16), (200, 30, 30)).save(tmp_path / "in" / "a.png")
    arr = (np.random.default_rng(0).random((16, 20, 3)) * 65535).astype(np.uint16)
    from impasto.engine.imageio import write_image
    from impasto.engine.pixels import PixelBuffer

    write_image(tmp_path / "in" / "sub" / "b.tif", PixelBuffer.from_array(arr))
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    rc = main(["stylize", str(tmp_path / "in"), str(tmp_path / "out"), "--style", "wave", "-q"])
    assert rc == 1  # the broken file is reported, the others are done
    assert (tmp_path / "out" / "a.png").exists()
    out, _ = read_image(tmp_path / "out" / "sub" / "b.tif")
    assert out.format.depth == "U16" and out.array.shape == (16, 20, 3)


def test_errors_are_one_line_plus_hint(tmp_path: Path, capsys: pytest.CaptureFixture, impasto_home: Path) -> None:
    src = tmp_path / "in.png"
    Image.new("RGB", (8, 8)).save(src)
    assert main(["stylize", str(src), str(tmp_path / "o.png"), "--style", "monet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("impasto: error: unknown style 'monet'; available:") and "scream" in err[0]
    assert len(err) == 2
    assert main(["stylize", str(tmp_path / "missing.png"), str(tmp_path / "o.png"), "--style", "wave"]) == 1
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "bad.jpg").write_bytes(b"\0" * 100)
    assert main(["upscale", str(tmp_path / "bad.jpg"), str(tmp_path / "o.png")]) == 1
    assert "cannot read this image" in capsys.readouterr().err
    Image.new("RGB", (300, 300)).save(src)
    assert main(["stylize", str(src), str(tmp_path / "o.png"), "--style", "wave", "--max-pixels", "1000"]) == 1
    assert "--max-pixels" in capsys.readouterr().err


def test_icc_profile_is_kept(tmp_path: Path, impasto_home: Path) -> None:
    src = tmp_path / "in.jpg"
    icc = b"\0" * 128 + b"fake-profile"
    Image.new("RGB", (16, 16), (10, 120, 200)).save(src, icc_profile=icc)
    assert main(["stylize", str(src), str(tmp_path / "o.jpg"), "--style", "wave", "-q"]) == 0
    assert Image.open(tmp_path / "o.jpg").info.get("icc_profile") == icc


def test_serve_takes_the_engine_options() -> None:
    # the backend the editors talk to is tuned with the same switches as stylize/upscale/batch
    from impasto.cli import build_parser
    from impasto.cli.stylize import engine_config

    args = build_parser().parse_args(["serve", "--address", "127.0.0.1:0", "--compile", "--no-bf16",
                                      "--memory-budget", "1.5", "--tile-size", "256", "--max-pixels", "1000"])
    cfg = engine_config(args)
    assert (cfg.compile, cfg.bf16, cfg.memory_budget, cfg.tile_size, cfg.max_pixels) == (
        True, False, int(1.5 * 2**30), 256, 1000)
