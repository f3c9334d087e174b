"""Image files as people have them: TIFF tags of every type, 16-bit PNG, transparency into JPEG, animations,
and files whose header claims far more pixels than they hold (decompression bombs)."""

from __future__ import annotations

import json
import logging
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from impasto.cli import main
from impasto.engine.imageio import read_image, write_image
from impasto.engine.pixels import PixelBuffer
from impasto.engine.png16 import png_depth
from impasto.errors import ImpastoError, InvalidArgument, ResourceExhausted
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
RNG = np.random.default_rng(7)


def rgb8(h: int = 6, w: int = 9, c: int = 3) -> np.ndarray:
    return (RNG.random((h, w, c)) * 255).astype(np.uint8)


def rgb16(h: int = 6, w: int = 9, c: int = 3) -> np.ndarray:
    return (RNG.random((h, w, c)) * 65535).astype(np.uint16)


# ---- hand-made files (Pillow cannot write 16-bit colour, and would allocate a bomb) ----


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(width: int, height: int, depth: int, colour: int, rows: bytes | None = None,
              interlace: int = 0) -> bytes:
    """A PNG with filter-0 scanlines `rows` (default: all zero, streamed, so 40000x40000 costs no memory)."""
    z = zlib.compressobj(9)
    if rows is None:
        row = bytes(1 + (width * depth * {0: 1, 2: 3, 4: 2, 6: 4}[colour] + 7) // 8)
        body = b"".join(z.compress(row * min(1000, height - y)) for y in range(0, height, 1000))
    else:
        body = z.compress(rows)
    body += z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


ADAM7 = [(0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1)]


def png16_bytes(arr: np.ndarray, interlace: bool = False) -> bytes:
    h, w, c = arr.shape
    passes = [arr[y0::dy, x0::dx] for y0, x0, dy, dx in ADAM7] if interlace else [arr]
    rows = b"".join(b"\0" + p[y].astype(">u2").tobytes() for p in passes if p.size for y in range(p.shape[0]))
    return png_bytes(w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], rows, int(interlace))


# TIFF field types: 2 ASCII, 3 SHORT, 4 LONG, 5 RATIONAL, 8 SSHORT, 10 SRATIONAL, 11 FLOAT, 12 DOUBLE;
# 99 is no type at all (a reader must skip it, as the spec says).
EXTRA_TAGS = [
    (282, 5, [(300, 1)]), (283, 5, [(300, 1)]), (296, 3, [2]),  # DPI 300, resolution unit inch
    (305, 2, b"Adobe Photoshop 25.0 (Windows)\0"), (306, 2, b"2024:01:02 03:04:05\0"),
    (318, 5, [(313, 1000), (329, 1000)]), (532, 5, [(0, 1), (255, 1)] * 3),  # white point, reference black/white
    (50000, 10, [(-1, 3)]), (50001, 11, [1.5]), (50002, 12, [2.25]), (50003, 8, [-7]), (50004, 99, [1, 2, 3]),
]


def tiff16_bytes(arr: np.ndarray, order: str = "<", extra: list | None = None, strips: int = 2) -> bytes:
    """A baseline 16-bit RGB(A) TIFF in either byte order, pixels in `strips` strips, plus `extra` tags."""
    h, w, c = arr.shape
    e = order
    bom = b"II*\0" if e == "<" else b"MM\0*"
    pixels = arr.astype(e + "u2").tobytes()
    per = -(-h // strips) * w * c * 2
    blobs: list[bytes] = []
    at = 8

    def blob(b: bytes) -> int:
        nonlocal at
        blobs.append(b + b"\0" * (len(b) % 2))
        at += len(blobs[-1])
        return at - len(blobs[-1])

    pieces = [pixels[i : i + per] for i in range(0, len(pixels), per)]
    offsets = [blob(p) for p in pieces]
    fmt = {2: "s", 3: "H", 4: "I", 8: "h", 11: "f", 12: "d", 99: "H"}
    entries = []
    tags = [(256, 4, [w]), (257, 4, [h]), (258, 3, [16] * c), (259, 3, [1]), (262, 3, [2]), (273, 4, offsets),
            (277, 3, [c]), (278, 4, [-(-h // strips)]), (279, 4, [len(p) for p in pieces]), (284, 3, [1])]
    if c == 4:
        tags.append((338, 3, [2]))
    for tag, typ, values in sorted(tags + (extra or [])):
        if typ == 2:
            data, count = values, len(values)
        elif typ in (5, 10):
            data = b"".join(struct.pack(e + ("II" if typ == 5 else "ii"), *v) for v in values)
            count = len(values)
        else:
            data, count = struct.pack(e + fmt[typ] * len(values), *values), len(values)
        field = data.ljust(4, b"\0") if len(data) <= 4 else struct.pack(e + "I", blob(data))
        entries.append(struct.pack(e + "HHI", tag, typ, count) + field)
    ifd = struct.pack(e + "H", len(entries)) + b"".join(entries) + b"\0\0\0\0"
    return bom + struct.pack(e + "I", at) + b"".join(blobs) + ifd


# ---- item 1: TIFF tags of every type ----


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_tiff_with_tags_of_every_type_keeps_all_bits(tmp_path: Path, order: str, channels: int) -> None:
    arr = rgb16(7, 5, channels)
    path = tmp_path / "scan.tif"
    path.write_bytes(tiff16_bytes(arr, order, EXTRA_TAGS, strips=3))
    buf, _ = read_image(path)
    assert buf.format.depth == "U16"
    np.testing.assert_array_equal(buf.array, arr)


@pytest.mark.parametrize("kwargs", [
    {"dpi": (300, 300)},
    {"dpi": (72.5, 96.25), "resolution_unit": 3},
    {"software": "GIMP 3.0.4", "description": "a scan", "dpi": (600, 600)},
    {"compression": "tiff_lzw", "dpi": (300, 300)},
    {"compression": "tiff_deflate", "software": "ImageMagick 7"},
])
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_8bit_tiffs_written_by_pillow_with_dpi_and_strings(tmp_path: Path, kwargs: dict, mode: str) -> None:
    im = Image.fromarray(rgb8(6, 9, 4)).convert(mode)
    path = tmp_path / "d.tif"
    im.save(path, **kwargs)
    buf, _ = read_image(path)
    expected = np.asarray(im.convert("RGBA" if mode == "RGBA" else "RGB"))
    np.testing.assert_array_equal(buf.array, expected)


def test_16bit_grey_tiff_from_pillow_with_dpi(tmp_path: Path) -> None:
    grey = (RNG.random((6, 9)) * 65535).astype(np.uint16)
    path = tmp_path / "g.tif"
    Image.fromarray(grey).save(path, dpi=(300, 300), software="scanner")
    buf, _ = read_image(path)
    assert buf.format.depth == "U16"
    np.testing.assert_array_equal(buf.array, np.repeat(grey[:, :, None], 3, axis=2))


def test_cli_stylizes_a_tiff_with_dpi(tmp_path: Path, impasto_home: Path) -> None:
    src = tmp_path / "d.tif"
    Image.fromarray(rgb8(16, 20)).save(src, dpi=(300, 300))
    assert main(["stylize", str(src), str(tmp_path / "o.tif"), "--style", "wave", "-q"]) == 0
    assert Image.open(tmp_path / "o.tif").size == (20, 16)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the broken tags it skips
def test_mutated_tiffs_never_cause_an_internal_error(tmp_path: Path) -> None:
    good = tiff16_bytes(rgb16(4, 3, 3), "<", EXTRA_TAGS[:6])
    rng = np.random.default_rng(0)
    path = tmp_path / "m.tif"
    outcomes = set()
    for _ in range(300):  # seeded random byte flips and truncations of a valid file
        bad = bytearray(good)
        for at in rng.integers(0, len(bad), rng.integers(1, 7)):
            bad[at] = rng.integers(0, 256)
        path.write_bytes(bytes(bad[: rng.integers(8, len(bad) + 1)]))
        try:
            read_image(path, max_pixels=10_000)
            outcomes.add("read")
        except ImpastoError as exc:
            outcomes.add(type(exc).__name__)
    assert "read" in outcomes and "InvalidArgument" in outcomes


# ---- item 2: 16-bit PNG, transparency into JPEG, animations ----


@pytest.mark.parametrize("interlace", [False, True])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16bit_png_stays_16bit_through_png_and_tiff(tmp_path: Path, channels: int, interlace: bool) -> None:
    arr = rgb16(11, 13, channels)
    src = tmp_path / "in.png"
    src.write_bytes(png16_bytes(arr, interlace))
    buf, _ = read_image(src)
    expected = np.concatenate([np.repeat(arr[:, :, :1], 3, axis=2), arr[:, :, 1:]], axis=2) if channels <= 2 else arr
    assert buf.format.depth == "U16"
    np.testing.assert_array_equal(buf.array, expected)
    for suffix in (".png", ".tif"):
        out = write_image(tmp_path / f"out{suffix}", buf)
        again, _ = read_image(out)
        np.testing.assert_array_equal(again.array, expected)
    assert png_depth(tmp_path / "out.png") == 16
    Image.open(tmp_path / "out.png").load()  # a valid PNG for other readers too (CRCs, zlib stream)


def test_16bit_png_with_a_transparent_colour_gets_alpha(tmp_path: Path) -> None:
    arr = rgb16(4, 5, 3)
    arr[0, 0] = (1000, 2000, 3000)
    plain = png16_bytes(arr)
    trns = _chunk(b"tRNS", struct.pack(">HHH", 1000, 2000, 3000))
    (tmp_path / "t.png").write_bytes(plain[:33] + trns + plain[33:])  # after IHDR, before IDAT
    buf, _ = read_image(tmp_path / "t.png")
    assert buf.format.name == "RGBA_U16"
    np.testing.assert_array_equal(buf.array[..., :3], arr)
    assert buf.array[0, 0, 3] == 0 and (buf.array[..., 3] == 65535).sum() == arr.shape[0] * arr.shape[1] - 1


def test_16bit_png_keeps_icc_and_exif(tmp_path: Path) -> None:
    icc = b"\0" * 128 + b"fake-profile"
    exif = Image.Exif()
    exif[0x0131] = "camera firmware"  # Software
    buf = PixelBuffer.from_array(rgb16(4, 4, 3))
    from impasto.engine.imageio import ImageMeta

    out = write_image(tmp_path / "o.png", buf, ImageMeta(icc, exif.tobytes()))
    with Image.open(out) as im:
        assert im.info.get("icc_profile") == icc
        assert im.getexif().get(0x0131) == "camera firmware"
    _, meta = read_image(out)
    assert meta.icc_profile == icc


def test_cli_keeps_16bit_png_input_16bit(tmp_path: Path, impasto_home: Path) -> None:
    src = tmp_path / "in.png"
    src.write_bytes(png16_bytes(rgb16(16, 20, 3)))
    assert main(["stylize", str(src), str(tmp_path / "o.png"), "--style", "wave", "-q"]) == 0
    assert png_depth(tmp_path / "o.png") == 16
    out, _ = read_image(tmp_path / "o.png")
    assert out.format.depth == "U16" and out.array.shape == (16, 20, 3)
    assert len(np.unique(out.array % 257)) > 1  # real 16-bit values, not 8-bit ones scaled by 257


def test_transparency_into_jpeg_is_flattened_onto_white_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    arr = np.zeros((8, 8, 4), np.uint8)
    arr[:, :4] = (200, 20, 20, 255)  # opaque red on the left, fully transparent black on the right
    with caplog.at_level(logging.WARNING, logger="impasto.engine.imageio"):
        write_image(tmp_path / "o.jpg", PixelBuffer.from_array(arr))
    out = np.asarray(Image.open(tmp_path / "o.jpg").convert("RGB")).astype(int)
    assert (out[:, 6:] > 240).all()  # white, not the black under the transparent pixels
    assert abs(out[:, :2] - (200, 20, 20)).max() < 12
    assert any("flattened onto white" in r.getMessage() for r in caplog.records)
    caplog.clear()
    arr[..., 3] = 255
    with caplog.at_level(logging.WARNING, logger="impasto.engine.imageio"):
        write_image(tmp_path / "opaque.jpg", PixelBuffer.from_array(arr))
    assert not caplog.records  # nothing was lost, so nothing to say


def frames(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (8, 8), (40 * i, 0, 0)) for i in range(n)]


@pytest.mark.parametrize("name,kwargs", [
    ("anim.gif", {"duration": 100, "loop": 0}),
    ("anim.png", {"duration": 100}),  # APNG
    ("anim.webp", {"duration": 100}),
    ("pages.tif", {}),
])
def test_animations_and_multipage_files_are_refused_not_cut_to_one_frame(
        tmp_path: Path, name: str, kwargs: dict) -> None:
    first, *rest = frames(3)
    first.save(tmp_path / name, save_all=True, append_images=rest, **kwargs)
    with pytest.raises(InvalidArgument, match="animation or multi-page") as err:
        read_image(tmp_path / name)
    assert err.value.hint and "PNG" in err.value.hint
    frames(1)[0].save(tmp_path / f"still{Path(name).suffix}")
    read_image(tmp_path / f"still{Path(name).suffix}")  # one frame is fine


# ---- item 3: decompression bombs ----

BOMB_CHILD = r"""
import json, resource, sys
from pathlib import Path
from impasto.cli import main
from impasto.engine.imageio import read_image
from impasto.errors import ImpastoError

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

base = peak_mb()
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
vm = int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmSize"))) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), hard))  # the old code would need gigabytes
results = {}
for name in sys.argv[1:]:
    try:
        read_image(name)
        results[name] = "read"
    except ImpastoError as exc:
        results[name] = f"{type(exc).__name__}: {exc.message} / {exc.hint}"
    except MemoryError as exc:
        results[name] = f"MemoryError {exc}"
rc = main(["stylize", sys.argv[1], "out.png", "--style", "wave", "--remote", "127.0.0.1:9", "-q"])
results["remote_rc"] = rc
results["peak_delta_mb"] = peak_mb() - base
print(json.dumps(results))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="measures memory through /proc (Linux)")
def test_decompression_bombs_are_refused_from_the_header(tmp_path: Path) -> None:
    png = tmp_path / "bomb.png"
    png.write_bytes(png_bytes(40_000, 40_000, 1, 0))  # 1.6 G pixels in about 200 KB
    tif = tmp_path / "bomb.tif"
    tif.write_bytes(tiff16_bytes(rgb16(2, 2, 3)).replace(struct.pack("<HHII", 256, 4, 1, 2),
                                                         struct.pack("<HHII", 256, 4, 1, 1 << 30)))
    assert png.stat().st_size < 1 << 20
    env = dict(os.environ, PYTHONPATH=str(ROOT / "backend"), IMPASTO_HOME=str(tmp_path / "home"))
    proc = subprocess.run([sys.executable, "-c", BOMB_CHILD, str(png), str(tif)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got[str(png)].startswith("ResourceExhausted: ") and "over the limit of 64,000,000" in got[str(png)]
    assert "40000x40000 = 1,600,000,000 pixels" in got[str(png)] and "--max-pixels" in got[str(png)]
    assert got[str(tif)].startswith("ResourceExhausted: ") and f"{1 << 30}x2" in got[str(tif)]
    assert got["remote_rc"] == 1  # --remote refuses before decoding or connecting
    assert "over the limit" in proc.stderr and "internal error" not in proc.stderr
    assert got["peak_delta_mb"] < 200


def test_max_pixels_holds_before_decoding(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    Image.fromarray(rgb8(30, 40)).save(src)
    with pytest.raises(ResourceExhausted, match="40x30 = 1,200 pixels, over the limit of 1,000"):
        read_image(src, max_pixels=1000)
    assert read_image(src, max_pixels=1200)[0].width == 40
    assert read_image(src, max_pixels=None)[0].width == 40


def test_remote_client_honours_its_own_max_pixels(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "in.png"
    Image.fromarray(rgb8(30, 40)).save(src)
    # Nothing listens on port 9: the size check must come first, before any decode or connection.
    rc = main(["stylize", str(src), str(tmp_path / "o.png"), "--style", "wave", "--remote", "127.0.0.1:9",
               "--max-pixels", "1000", "-q"])
    err = capsys.readouterr().err
    assert rc == 1 and "over the limit of 1,000" in err and "--max-pixels" in err


def _deflate_tiff16(path: Path, rgb16: np.ndarray, predictor: int = 1, compression: int = 8) -> None:
    """A little-endian, deflate-compressed (tag 259 = 8), one-strip 16-bit RGB TIFF, as GIMP or Photoshop
    write them (Pillow cannot write 16-bit colour TIFFs). The strip is stored as given for other codes."""
    h, w, _ = rgb16.shape
    raw = rgb16.astype("<u2")
    if predictor == 2:
        raw = np.diff(raw, axis=1, prepend=np.zeros((h, 1, 3), "<u2")).astype("<u2")
    strip = zlib.compress(raw.tobytes()) if compression == 8 else raw.tobytes()
    bits_at, data_at = 8, 14
    ifd_at = data_at + len(strip) + (len(strip) & 1)
    tags = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, 3, bits_at), (259, 3, 1, compression), (262, 3, 1, 2),
            (273, 4, 1, data_at), (277, 3, 1, 3), (278, 3, 1, h), (279, 4, 1, len(strip)), (284, 3, 1, 1),
            (317, 3, 1, predictor)]
    out = bytearray(b"II*\x00" + struct.pack("<I", ifd_at) + struct.pack("<3H", 16, 16, 16) + strip)
    out += b"\x00" * (ifd_at - len(out))
    out += struct.pack("<H", len(tags))
    for tag, typ, count, value in tags:
        out += struct.pack("<HHI", tag, typ, count) + (struct.pack("<HH", value, 0) if typ == 3 and count == 1
                                                         else struct.pack("<I", value))
    out += struct.pack("<I", 0)
    path.write_bytes(bytes(out))


@pytest.mark.parametrize("predictor", [1, 2])
def test_a_deflate_compressed_16_bit_tiff_keeps_16_bits(tmp_path: Path, predictor: int) -> None:
    from impasto.engine.imageio import read_image

    rgb16 = np.random.default_rng(0).integers(0, 65535, (12, 10, 3), dtype=np.uint16)
    path = tmp_path / "deflate16.tif"
    _deflate_tiff16(path, rgb16, predictor)
    buf, _ = read_image(path)
    assert buf.array.dtype == np.uint16 and np.array_equal(buf.array, rgb16)


def test_a_deflate_bomb_strip_is_not_inflated_past_the_image(tmp_path: Path) -> None:
    from impasto.engine.tiff16 import read_tiff16

    path = tmp_path / "bomb.tif"
    _deflate_tiff16(path, np.zeros((4, 4, 3), np.uint16))
    data = path.read_bytes()
    huge = zlib.compress(bytes(200 << 20))  # 200 MB of zeros in a 200 KB strip, for a 4x4 image
    at = data.index(zlib.compress(np.zeros((4, 4, 3), "<u2").tobytes()))
    path.write_bytes(data[:at] + huge[: len(data) - at - 200] + data[len(data) - 200:])  # same layout, cut
    from peak_memory import PeakRSS

    with PeakRSS() as peak:
        try:
            read_tiff16(path)  # refused or read, but never inflated to 200 MB: max_length bounds each strip
        except (ValueError, zlib.error):
            pass
    assert peak.below(100), f"peak {peak.mb:.0f} MiB"


def test_another_compressed_16_bit_tiff_says_it_is_read_with_8_bits(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Pillow decodes other compressed 16-bit colour TIFFs to 8 bits: the loss is reported, never silent."""
    from impasto.engine.imageio import read_image

    rgb16 = np.random.default_rng(0).integers(0, 65535, (12, 10, 3), dtype=np.uint16)
    path = tmp_path / "packbits16.tif"
    _deflate_tiff16(path, rgb16, compression=1)
    data = bytearray(path.read_bytes())
    # mark the (uncompressed) strip as PackBits, which our reader leaves to Pillow; every literal run then
    # still decodes, just not to these values: what matters is the warning
    ifd = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[ifd:ifd + 2])[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack("<H", data[entry:entry + 2])[0] == 259:
            data[entry + 8:entry + 10] = struct.pack("<H", 32773)
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="impasto.engine.imageio"):
        try:
            buf, _ = read_image(path)
        except Exception:  # noqa: BLE001 - a refusal is fine too; a silent 8-bit read is not
            return
    assert buf.array.dtype == np.uint16 or any("8 bits per channel" in r.getMessage() for r in caplog.records)
