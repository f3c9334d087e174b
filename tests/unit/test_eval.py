"""SR evaluation: the paper's bicubic Set5 x4 baseline, the metrics themselves, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from impasto.cli import main
from impasto.train.evaluate import evaluate, find_pairs, psnr, rgb_to_y, ssim
from PIL import Image

DATA = Path(__file__).parents[2].parent / "shared" / "data"
SET5 = DATA / "sr" / "eval_x4" / "Set5"
needs_set5 = pytest.mark.shared_data("sr/eval_x4/Set5")


@needs_set5
def test_bicubic_reproduces_the_paper_on_set5_x4() -> None:
    res = evaluate(SET5, 4, lpips=False)  # LPIPS is checked in test_lpips.py; here only the paper's figures
    assert len(res.images) == 5
    assert res.psnr == pytest.approx(28.43, abs=0.02)  # Johnson et al. 2016, Table 1
    assert res.ssim == pytest.approx(0.811, abs=0.005)


@pytest.mark.shared_data("sr/eval_x4/Set14")
def test_bicubic_reproduces_the_paper_on_set14_x4() -> None:
    # Set14 has one single-channel image, measured on grey values like the MATLAB scripts (else 26.09 dB).
    assert evaluate(DATA / "sr" / "eval_x4" / "Set14", 4, lpips=False).psnr == pytest.approx(25.99, abs=0.02)


def test_metrics_on_known_cases() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 255, (40, 40))
    assert psnr(a, a) == float("inf")
    assert psnr(a, a + 1) == pytest.approx(10 * np.log10(255**2), abs=1e-9)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, rng.uniform(0, 255, (40, 40))) < 0.1
    white = np.full((1, 1, 3), 255, np.uint8)
    assert rgb_to_y(white)[0, 0] == pytest.approx(235.0)
    assert rgb_to_y(np.zeros((1, 1, 3)))[0, 0] == 16.0


def test_hr_only_folders_are_degraded_here(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (35, 42, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    ((name, hr, lr, gray),) = find_pairs(tmp_path, 4)
    assert name == "photo" and hr.shape == (32, 40, 3) and lr.shape == (8, 10, 3) and not gray


def test_cli_eval_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    yy, xx = np.mgrid[0:64, 0:64]
    smooth = np.stack([xx * 3, yy * 3, (xx + yy) * 2], -1).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "a_HR.png")
    Image.fromarray(smooth).resize((16, 16), Image.Resampling.BICUBIC).save(tmp_path / "a_LR.png")
    assert main(["eval", "sr", str(tmp_path), "--scale", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "bicubic" and out["psnr"] > 30 and set(out["images"]) == {"a"}
    assert 0 < out["lpips"] == out["images"]["a"]["lpips"] < 0.5  # a smooth ramp: bicubic is close


def test_cli_eval_table_has_lpips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(4)
    Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(tmp_path / "noise.png")
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "tiny.png")
    assert main(["eval", "sr", str(tmp_path), "--scale", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    noise, tiny, mean = (next(v for v in lines if v.startswith(k)) for k in ("noise", "tiny", "mean"))
    assert "LPIPS n/a" in " ".join(tiny.split())  # 12 px after the border: too small for LPIPS
    assert float(noise.split("LPIPS")[1]) > 0.1 and mean.split("LPIPS")[1].split()[0] == noise.split("LPIPS")[1].strip()
    assert main(["eval", "sr", str(tmp_path), "--scale", "2", "--no-lpips", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["lpips"] is None and "lpips" not in out["images"]["noise"]


def test_cli_eval_sr_model_from_a_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch
    from impasto.nets.sr import build_johnson_sr
    from impasto.train.common import save_checkpoint
    from impasto.train.sr import SRConfig

    net = build_johnson_sr(scale=4, channels=8, blocks=1)
    cfg = SRConfig(data="x", name="n")
    opt = torch.optim.Adam(net.parameters())
    save_checkpoint(tmp_path / "latest.pt", model=net, model_args={"scale": 4, "channels": 8, "blocks": 1},
                    config=cfg, optimizer=opt, scaler=torch.amp.GradScaler("cuda", enabled=False), iteration=0,
                    gen=torch.Generator(), history=[])
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "img.png")
    assert main(["eval", "sr", str(tmp_path), "--model", str(tmp_path / "latest.pt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["method"].endswith("latest.pt")


def test_cli_gatys(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 255, (32, 40, 3), dtype=np.uint8)).save(tmp_path / "c.png")
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "s.png")
    assert main(["gatys", str(tmp_path / "c.png"), str(tmp_path / "s.png"), str(tmp_path / "o.png"),
                 "--iterations", "3", "--size", "0", "--device", "cpu"]) == 0
    assert Image.open(tmp_path / "o.png").size == (40, 32)


def test_cli_train_needs_data() -> None:
    assert main(["train", "style", "--name", "x"]) == 1
