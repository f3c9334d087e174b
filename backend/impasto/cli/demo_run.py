"""`impasto demo`: the whole thing, offline, on the bundled models.

Starts a backend on a free loopback port, stylizes a bundled sample photo with every bundled style,
upscales a small copy of a bundled photo with every SR model and with bicubic (PSNR against the
original beside each), writes impasto-demo/index.html and a contact sheet, and stops the backend."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from impasto.models.store import BUNDLED_DIR

SAMPLES = BUNDLED_DIR.parent / "samples"


@dataclass
class Tile:
    label: str
    file: str
    note: str = ""


def psnr_y(a: np.ndarray, b: np.ndarray, border: int) -> float:
    """PSNR on BT.601 luma with `border` pixels cropped: the SR convention, as `impasto eval sr` computes it."""
    from impasto.train.evaluate import psnr, rgb_to_y

    ya, yb = rgb_to_y(a), rgb_to_y(b)
    if border:
        ya, yb = ya[border:-border, border:-border], yb[border:-border, border:-border]
    return psnr(ya, yb)


def _save(arr: np.ndarray, path: Path) -> None:
    Image.fromarray(arr).save(path)


def _contact_sheet(rows: list[tuple[str, list[tuple[str, Path]]]], out: Path, cell: int = 220) -> None:
    cols = max(len(r[1]) for r in rows)
    label_h, title_h = 18, 22
    sheet = Image.new("RGB", (cols * cell, len(rows) * (cell + label_h + title_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (title, items) in enumerate(rows):
        top = r * (cell + label_h + title_h)
        draw.text((6, top + 4), title, fill="black")
        for c, (label, path) in enumerate(items):
            im = Image.open(path).convert("RGB")
            im.thumbnail((cell - 8, cell - 8), Image.Resampling.LANCZOS)
            x = c * cell + (cell - im.width) // 2
            sheet.paste(im, (x, top + title_h + (cell - 8 - im.height) // 2))
            draw.text((c * cell + 6, top + title_h + cell - 4), label, fill="black")
    sheet.save(out)


def _page(style_tiles: list[Tile], sr_tiles: list[Tile], device: str) -> str:
    def grid(tiles: list[Tile]) -> str:
        return "\n".join(
            f'<figure><img src="{html.escape(t.file)}" alt="{html.escape(t.label)}">'
            f"<figcaption>{html.escape(t.label)}<br><small>{html.escape(t.note)}</small></figcaption></figure>"
            for t in tiles
        )

    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Impasto demo</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}} figure{{display:inline-block;margin:.5em;
text-align:center;vertical-align:top}} img{{max-width:260px;image-rendering:auto}} small{{color:#555}}</style>
</head><body>
<h1>Impasto demo</h1>
<p>Feed-forward style transfer and super-resolution (Johnson, Alahi &amp; Fei-Fei 2016), run by a local
backend on {html.escape(device)}, offline, with the models bundled in the package.</p>
<h2>Styles</h2>
{grid(style_tiles)}
<h2>Super-resolution</h2>
<p>A photo reduced by the scale factor, then upscaled back; PSNR (luma, border cropped) against the original.</p>
{grid(sr_tiles)}
<p><a href="contact-sheet.png">Contact sheet</a></p>
</body></html>
"""


def run_demo(out_dir: Path, *, progress: Callable[[str], None] | None = None, device: str = "auto",
             runtime: str = "auto") -> Path:
    """Write the demo into `out_dir`; returns the index.html path."""
    from impasto.engine.engine import Engine, EngineConfig
    from impasto.serve.client import Client
    from impasto.serve.server import ImpastoServer, ServerConfig

    say = progress or (lambda message: None)
    out_dir.mkdir(parents=True, exist_ok=True)
    photo = np.asarray(Image.open(SAMPLES / "chelsea.png").convert("RGB"))
    hr_full = np.asarray(Image.open(SAMPLES / "coffee.png").convert("RGB"))
    engine = Engine(EngineConfig(device=device, runtime=runtime))
    server = ImpastoServer(engine, ServerConfig(address="127.0.0.1:0", grace=1.0))
    address = server.start()
    say(f"backend on {address} ({engine.device_name})")
    style_tiles: list[Tile] = [Tile("original", "original.png")]
    sr_tiles: list[Tile] = []
    try:
        with Client(address) as client:
            _save(photo, out_dir / "original.png")
            models = client.models()
            for m in (m for m in models if m.kind == "style"):
                say(f"stylize: {m.name}")
                _save(client.stylize(photo, m.name), out_dir / f"style-{m.name}.png")
                style_tiles.append(Tile(m.display_name or m.name, f"style-{m.name}.png", m.attribution.split(";")[0]))
            for scale in sorted({m.scale for m in models if m.kind == "sr"}):
                h, w = (hr_full.shape[0] // scale) * scale, (hr_full.shape[1] // scale) * scale
                hr = hr_full[:h, :w]
                small = np.asarray(Image.fromarray(hr).resize((w // scale, h // scale), Image.Resampling.BICUBIC))
                _save(hr, out_dir / f"sr-x{scale}-original.png")
                _save(small, out_dir / f"sr-x{scale}-input.png")
                sr_tiles.append(Tile(f"x{scale} input ({w // scale}x{h // scale})", f"sr-x{scale}-input.png"))
                for name in ["bicubic"] + [m.name for m in models if m.kind == "sr" and m.scale == scale]:
                    say(f"upscale x{scale}: {name}")
                    up = client.upscale(small, scale, model=name)
                    _save(up, out_dir / f"sr-x{scale}-{name}.png")
                    sr_tiles.append(Tile(f"x{scale} {name}", f"sr-x{scale}-{name}.png",
                                         f"PSNR {psnr_y(up, hr, scale):.2f} dB"))
                sr_tiles.append(Tile(f"x{scale} original", f"sr-x{scale}-original.png"))
            device_name = client.info().device
    finally:
        server.stop(grace=1.0)
        say("backend stopped")
    rows = [("Styles", [(t.label, out_dir / t.file) for t in style_tiles])]
    for scale in sorted({int(t.label.split()[0][1:]) for t in sr_tiles}):
        rows.append((f"Super-resolution x{scale}", [(t.label + (f"  {t.note}" if t.note else ""), out_dir / t.file)
                                                    for t in sr_tiles if t.label.startswith(f"x{scale} ")]))
    _contact_sheet(rows, out_dir / "contact-sheet.png")
    index = out_dir / "index.html"
    index.write_text(_page(style_tiles, sr_tiles, device_name), encoding="utf-8")
    return index

