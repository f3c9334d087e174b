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
    from impasto.cli.options import engine_config

    args = build_parser().parse_args(["serve", "--address", "127.0.0.1:0", "--compile", "--no-bf16",
                                      "--memory-budget", "1.5", "--tile-size", "256", "--max-pixels", "1000"])
    cfg = engine_config(args)
    assert (cfg.compile, cfg.bf16, cfg.memory_budget, cfg.tile_size, cfg.max_pixels) == (
        True, False, int(1.5 * 2**30), 256, 1000)
    assert cfg.force_tiles  # a tile size given is a tile size used
    assert not engine_config(build_parser().parse_args(["serve"])).force_tiles


def test_tile_size_alone_tiles_and_matches_the_whole_image(tmp_path: Path) -> None:
    """--tile-size forces tiling (it needed --memory-budget too); tiled output equals untiled in fp32."""
    src = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(src)
    common = ["--style", "wave", "--no-bf16", "--runtime", "torch", "-q"]
    assert main(["stylize", str(src), str(tmp_path / "whole.png"), *common]) == 0
    assert main(["stylize", str(src), str(tmp_path / "tiled.png"), "--tile-size", "16", *common]) == 0
    whole = np.asarray(Image.open(tmp_path / "whole.png"), dtype=int)
    tiled = np.asarray(Image.open(tmp_path / "tiled.png"), dtype=int)
    assert np.abs(whole - tiled).max() <= 1


# ---- issue 14, item 6: clear one-line errors instead of "internal error" ----

BUNDLED = Path(__file__).resolve().parents[2] / "backend/impasto/data/models"


@pytest.mark.parametrize("name,content", [
    ("some.txt", b"hello world\n"),
    ("empty.pth", b""),
    ("photo.pth", None),  # an image that happens to be called .pth
    ("notes.md", b"# my model\n" * 50),
])
def test_models_import_of_a_non_model_file(tmp_path: Path, capsys: pytest.CaptureFixture, impasto_home: Path,
                                           name: str, content: bytes | None) -> None:
    path = tmp_path / name
    if content is None:
        Image.new("RGB", (8, 8)).save(path, format="PNG")
    else:
        path.write_bytes(content)
    assert main(["models", "import", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == f"impasto: error: {name}: not a model file (neither safetensors nor PyTorch weights)"
    assert len(err) == 2 and ".safetensors" in err[1]


def test_name_clash_hints_name_flags_that_exist(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                impasto_home: Path) -> None:
    import re

    from impasto.cli import build_parser

    src = str(BUNDLED / "srgan-x2.safetensors")
    assert main(["models", "import", src, "--name", "mine"]) == 0
    capsys.readouterr()
    assert main(["models", "import", src, "--name", "mine"]) == 1
    err = capsys.readouterr().err
    assert "a model named 'mine' already exists" in err
    flags = re.findall(r"--[a-z][a-z-]*", err)
    assert "--overwrite" in flags
    for command in (["models", "import", src], ["models", "pull", "candy-nc16"],
                    ["train", "sr", "--data", "d", "--name", "n"]):
        for flag in flags:  # every flag the hint names exists on every command that can hit it
            build_parser().parse_args([*command, flag])
    assert main(["models", "import", src, "--name", "mine", "--overwrite"]) == 0
    assert main(["models", "import", src, "--name", "srgan-x2", "--overwrite"]) == 1  # never over a bundled one
    assert "bundled model named 'srgan-x2'" in capsys.readouterr().err


def test_batch_into_an_output_folder_that_cannot_be_made(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                        impasto_home: Path) -> None:
    (tmp_path / "in").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "in" / "a.png")
    (tmp_path / "file").write_bytes(b"x")
    rc = main(["batch", "stylize", str(tmp_path / "in"), str(tmp_path / "file" / "out"), "--style", "wave",
               "--workers", "1", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[0].startswith("impasto: error: cannot write outputs to ") and len(err) == 2


def _can_mount_tmpfs() -> bool:
    import shutil
    import subprocess

    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs `unshare -rm` and a tmpfs mount (user namespaces)")
def test_batch_on_a_full_disk_fails_before_any_work(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    (tmp_path / "in").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "in" / "a.png")
    disk = tmp_path / "disk"
    disk.mkdir()
    # A private mount namespace: a 256 KiB tmpfs, filled up, exists only for this command.
    script = ('mount -t tmpfs -o size=256k tmpfs "$1" && { head -c 1M /dev/zero > "$1/fill" 2>/dev/null; '
              'exec "$2" -m impasto batch stylize "$3" "$1/out" --style wave --workers 1 -q; }')
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "backend"),
               IMPASTO_HOME=str(tmp_path / "home"))
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(disk), sys.executable,
                           str(tmp_path / "in")], capture_output=True, text=True, timeout=300, env=env)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert err[0].startswith("impasto: error: no space left to write outputs in ") and len(err) == 2


def test_output_problems_are_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                     impasto_home: Path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    for p in (a, b):
        Image.new("RGB", (8, 8), (10, 20, 30)).save(p)
    before = a.read_bytes()

    def refused(*argv: str) -> str:
        assert main(["upscale", *argv, "--model", "bicubic", "--scale", "2", "-q"]) == 1
        return capsys.readouterr().err

    # An unknown output extension: said at once (it used to be found after the work, when writing).
    assert "unknown output format '.xyz'" in refused(str(a), str(tmp_path / "o.xyz"))
    assert "(no extension)" in refused(str(a), str(tmp_path / "o"))
    # Several inputs (or a folder) and a file-like OUT: no folder called out.jpg appears.
    err = refused(str(a), str(b), str(tmp_path / "out.jpg"))
    assert "out.jpg looks like a file name, but 2 inputs need an output folder" in err
    assert not (tmp_path / "out.jpg").exists()
    (tmp_path / "in").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "in" / "c.png")
    assert "need an output folder" in refused(str(tmp_path / "in"), str(tmp_path / "x.png"))
    assert "is a file" in refused(str(a), str(b), str(b))
    # The same path as input and output: refused unless --overwrite.
    err = refused(str(a), str(a))
    assert "is also an input" in err and "--overwrite" in err and a.read_bytes() == before
    assert "is also an input" in refused(str(tmp_path / "in"), str(tmp_path / "in"))
    assert main(["upscale", str(a), str(a), "--model", "bicubic", "--scale", "2", "-q", "--overwrite"]) == 0
    assert Image.open(a).size == (16, 16)
    assert not list(tmp_path.glob("o*"))


def test_batch_out_dir_must_be_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture, impasto_home: Path) -> None:
    (tmp_path / "in").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "in" / "a.png")
    common = ["--scale", "2", "--model", "bicubic", "--workers", "1", "-q"]
    assert main(["batch", "upscale", str(tmp_path / "in"), str(tmp_path / "out.jpg"), *common]) == 1
    assert "looks like an image file name" in capsys.readouterr().err and not (tmp_path / "out.jpg").exists()
    (tmp_path / "file").write_text("x")
    assert main(["batch", "upscale", str(tmp_path / "in"), str(tmp_path / "file"), *common]) == 1
    assert "is a file" in capsys.readouterr().err


def test_token_from_a_file_or_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture) -> None:
    from impasto.cli import build_parser
    from impasto.cli.options import token
    from impasto.errors import InvalidArgument

    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    monkeypatch.setenv("IMPASTO_TOKEN", "from-env")
    for cmd in (["serve"], ["stylize", "a.png", "b.png", "--style", "wave", "--remote", "host:1"]):
        capsys.readouterr()
        assert token(build_parser().parse_args([*cmd, "--token-file", str(secret)])) == "from-file"
        assert token(build_parser().parse_args(cmd)) == "from-env"
        assert capsys.readouterr().err == ""
        assert token(build_parser().parse_args([*cmd, "--token", "typed"])) == "typed"
        assert "visible to other users" in capsys.readouterr().err  # a warning, not a refusal
        with pytest.raises(InvalidArgument, match="not both"):
            token(build_parser().parse_args([*cmd, "--token", "t", "--token-file", str(secret)]))
    monkeypatch.delenv("IMPASTO_TOKEN")
    assert token(build_parser().parse_args(["serve"])) is None
    (tmp_path / "empty").write_text(" \n")
    with pytest.raises(InvalidArgument, match="empty"):
        token(build_parser().parse_args(["serve", "--token-file", str(tmp_path / "empty")]))
    with pytest.raises(InvalidArgument, match="cannot read the token file"):
        token(build_parser().parse_args(["serve", "--token-file", str(tmp_path / "missing")]))


def test_a_token_in_plain_text_off_this_machine_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMPASTO_TOKEN", "s3cret")
    assert main(["serve", "--address", "0.0.0.0:0", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "plain text" in err and "--tls-cert FILE --tls-key FILE" in err and "--insecure-token" in err
    src = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(src)
    assert main(["upscale", str(src), str(tmp_path / "b.png"), "--remote", "192.0.2.1:50051"]) == 1
    err = capsys.readouterr().err
    assert "plain text" in err and "--tls-ca FILE" in err and "--insecure-token" in err


def test_help_loads_neither_torch_nor_grpc() -> None:
    import subprocess
    import sys

    code = "import sys; from impasto.cli import build_parser; build_parser(); " \
           "print(sorted(m for m in ('torch', 'grpc') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
