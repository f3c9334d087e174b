"""What style and super-resolution training share: image folders, the learning-rate function, the loop with
checkpoints that resume exactly, and the PNG side outputs (sample grids, loss curves).

Training reads top to bottom (nanoGPT's train.py): a frozen config, a pure lr function, and a checkpoint
holding model args + config + optimizer + RNG states so `--resume` rebuilds the same run bit for bit.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor, nn

from impasto.cancel import CancelToken, Progress
from impasto.errors import InvalidArgument, NotFound

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


class LoopConfig(Protocol):
    """The fields `fit` reads (both StyleConfig and SRConfig have them; read-only, as they are frozen)."""

    @property
    def iterations(self) -> int: ...
    @property
    def lr(self) -> float: ...
    @property
    def lr_schedule(self) -> str: ...
    @property
    def warmup(self) -> int: ...
    @property
    def checkpoint_every(self) -> int: ...
    @property
    def sample_every(self) -> int: ...
    @property
    def seed(self) -> int: ...
    @property
    def amp(self) -> bool: ...


def lr_at(it: int, *, lr: float, iterations: int, schedule: str = "constant", warmup: int = 0) -> float:
    """Learning rate for iteration `it` (0-based). The paper uses Adam at a constant 1e-3; ``cosine`` decays
    to 10% of `lr`, which helps the short runs a CPU allows."""
    if warmup and it < warmup:
        return lr * (it + 1) / warmup
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        t = min(1.0, (it - warmup) / max(1, iterations - warmup))
        return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))
    raise InvalidArgument(f"unknown learning-rate schedule {schedule!r}", hint="use constant or cosine")


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise NotFound(f"{folder}: no such folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise InvalidArgument(f"{folder}: no images found", hint="use a folder of PNG/JPEG photos")
    return files


def split_held_out(paths: list[Path], every: int) -> tuple[list[Path], list[Path]]:
    """(training, held out): with `every` = K > 1, every K-th photo in sorted path order (the K-th, 2K-th, ...)
    is held out of training so a model can be scored on photos it never saw; K = 0 holds nothing out. The same
    rule selects the held-out photos for `impasto eval sr --held-out K`."""
    if every <= 0:
        return list(paths), []
    if every == 1:
        raise InvalidArgument("--hold-out 1 would hold out every photo", hint="use K >= 2 (every K-th photo)")
    held = [p for i, p in enumerate(paths) if i % every == every - 1]
    return [p for i, p in enumerate(paths) if i % every != every - 1], held


def load_rgb(path: str | Path, max_side: int | None = None) -> Tensor:
    """(1, 3, H, W) float RGB 0-255; optionally shrunk (bicubic, antialiased by PIL) so the long side is max_side."""
    with Image.open(path) as src:
        im = src.convert("RGB")
        if max_side and max(im.size) != max_side:
            s = max_side / max(im.size)
            im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.Resampling.BICUBIC)
        arr = np.asarray(im, dtype=np.float32)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None]


def to_pil(image: Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) RGB 0-255 -> PIL image."""
    if image.dim() == 4:
        image = image[0]
    arr = image.detach().float().clamp(0, 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")


class ImageFolder:
    """Photos resized once so the short side is `short_side` (cached in memory up to `cache_bytes`), cropped at
    random with an explicit generator so runs are reproducible. With `native`, photos at least `short_side` on
    their short side keep their own resolution (SR must learn real detail, not a resampled copy of it);
    smaller ones are still enlarged to fit a crop."""

    def __init__(self, folder: str | Path, short_side: int, cache_bytes: int = 2 << 30, native: bool = False,
                 hold_out: int = 0) -> None:
        self.paths, self.held_out = split_held_out(list_images(folder), hold_out)
        self.short_side = short_side
        self.native = native
        self._cache: dict[int, Tensor] = {}
        self._cache_left = cache_bytes  # decoded photos kept up to this much memory; the rest are re-read

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, i: int) -> Tensor:
        if i in self._cache:
            return self._cache[i]
        with Image.open(self.paths[i]) as src:
            im = src.convert("RGB")
            s = self.short_side / min(im.size)
            if not (self.native and s <= 1):
                im = im.resize((max(self.short_side, round(im.width * s)),
                                max(self.short_side, round(im.height * s))), Image.Resampling.BICUBIC)
            t = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)  # (3, H, W) uint8
        if t.numel() <= self._cache_left:
            self._cache[i] = t
            self._cache_left -= t.numel()
        return t

    def batch(self, n: int, size: int, gen: torch.Generator, dihedral: bool = False) -> Tensor:
        """(n, 3, size, size) float 0-255 random crops of random images, horizontally flipped half the time;
        with `dihedral`, also turned by a random multiple of 90 degrees (all 8 symmetries of the square, the
        augmentation of the SR literature, e.g. EDSR)."""
        out = []
        for _ in range(n):
            i = int(torch.randint(len(self.paths), (1,), generator=gen))
            img = self.image(i)
            h, w = img.shape[1:]
            y = int(torch.randint(h - size + 1, (1,), generator=gen))
            x = int(torch.randint(w - size + 1, (1,), generator=gen))
            crop = img[:, y : y + size, x : x + size]
            if bool(torch.rand((), generator=gen) < 0.5):
                crop = crop.flip(2)
            if dihedral:
                crop = torch.rot90(crop, int(torch.randint(4, (1,), generator=gen)), dims=(1, 2))
            out.append(crop)
        return torch.stack(out).float()

    def center(self, i: int, size: int) -> Tensor:
        img = self.image(i)
        h, w = img.shape[1:]
        y, x = (h - size) // 2, (w - size) // 2
        return img[None, :, y : y + size, x : x + size].float()


def image_grid(rows: list[list[Tensor]], path: Path, pad: int = 4) -> None:
    """Paste (1, 3, H, W) images into a grid PNG (rows may differ in image size)."""
    pics = [[to_pil(t) for t in row] for row in rows]
    width = max(sum(p.width for p in row) + pad * (len(row) + 1) for row in pics)
    height = sum(max(p.height for p in row) for row in pics) + pad * (len(pics) + 1)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    y = pad
    for row in pics:
        x = pad
        for p in row:
            canvas.paste(p, (x, y))
            x += p.width + pad
        y += max(p.height for p in row) + pad
    canvas.save(path)


def _smooth(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    # A moving average over ~2% of the run: per-batch losses are too noisy to read trends from.
    k = max(1, len(points) // 50)
    if k == 1:
        return points
    vals = np.convolve([v for _, v in points], np.ones(k) / k, mode="valid")
    return [(points[i + k - 1][0], float(v)) for i, v in enumerate(vals)]


def loss_curve(history: list[dict[str, float]], path: Path, keys: tuple[str, ...] = ("total",)) -> None:
    """A small log-scale loss plot (moving averages) drawn with PIL (no matplotlib dependency)."""
    w, h, m = 640, 360, 48
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    colours = ["#000000", "#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    series = {k: _smooth([(r["iteration"], r[k]) for r in history if r.get(k, 0) > 0]) for k in keys}
    pts = [v for s in series.values() for _, v in s]
    if not pts:
        img.save(path)
        return
    lo, hi = math.log10(min(pts)), math.log10(max(pts))
    hi = hi if hi > lo else lo + 1
    last = max(r["iteration"] for r in history) or 1
    d.rectangle([m, m // 2, w - m // 2, h - m], outline="#888888")
    for e in range(math.floor(lo), math.ceil(hi) + 1):
        if lo <= e <= hi:
            y = h - m - (e - lo) / (hi - lo) * (h - 1.5 * m)
            d.line([m, y, w - m // 2, y], fill="#dddddd")
            d.text((4, y - 6), f"1e{e}", fill="#444444")
    d.text((m, h - m + 8), "0", fill="#444444")
    d.text((w - m, h - m + 8), str(last), fill="#444444")
    d.text((w // 2 - 30, h - m + 20), "iteration", fill="#444444")
    for (key, s), colour in zip(series.items(), colours, strict=False):
        xy = [(m + it / last * (w - 1.5 * m), h - m - (math.log10(v) - lo) / (hi - lo) * (h - 1.5 * m)) for it, v in s]
        if len(xy) > 1:
            d.line(xy, fill=colour, width=2)
        d.text((w - m - 90, m // 2 + 6 + 14 * list(series).index(key)), key, fill=colour)
    img.save(path)


def _rng_state(gen: torch.Generator) -> dict[str, Any]:
    state: dict[str, Any] = {"data": gen.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def training_record(cfg: Any, final: dict[str, float]) -> dict[str, Any]:
    """The training config a saved model carries: every setting and the final losses, with paths cut to their
    last component (a shared model must not publish the trainer's folders; checkpoints keep the real paths)."""
    from impasto.models.info import strip_paths

    record: dict[str, Any] = strip_paths({**asdict(cfg), "final": final})
    return record


def save_checkpoint(path: Path, *, model: nn.Module, model_args: dict, config: Any, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, iteration: int, gen: torch.Generator,
                    history: list[dict[str, float]]) -> None:
    ckpt = {"model_args": model_args, "config": asdict(config), "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "iteration": iteration,
            "rng": _rng_state(gen), "history": history}
    tmp = path.with_suffix(".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint behind a crash


def resumed_length(ckpt: dict[str, Any], asked: int) -> int:
    """The iteration count of a resumed run. Only the length and the store name may change on resume;
    everything else must match to be exact (and the length only by choice: it moves a cosine schedule).
    `asked` <= 0 keeps the checkpoint's own plan; a run never ends before the checkpoint's iteration."""
    planned = int(ckpt["config"]["iterations"]) if asked <= 0 else asked
    return max(planned, int(ckpt["iteration"]))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint file, or a run folder (its latest.pt). Tensors and plain data only (weights_only)."""
    path = Path(path)
    if path.is_dir():
        path = path / "latest.pt"
    if not path.is_file():
        raise NotFound(f"no checkpoint at {path}", hint="pass the run folder or its latest.pt to --resume")
    return torch.load(path, map_location="cpu", weights_only=True)


def fit(
    *,
    model: nn.Module,
    model_args: dict,
    cfg: LoopConfig,
    out_dir: Path,
    next_batch: Callable[[torch.Generator], Tensor],
    compute_loss: Callable[[nn.Module, Tensor], tuple[Tensor, dict[str, float]]],
    write_samples: Callable[[nn.Module, Path], None] | None = None,
    device: torch.device,
    resume: dict[str, Any] | None = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    show_bar: bool = True,
) -> list[dict[str, float]]:
    """The training loop shared by style and SR training: Adam, lr from `lr_at`, AMP (fp16 + GradScaler) on
    CUDA, bf16 autocast on CPUs with native bf16 (AVX512-BF16/AMX: about 1.7x faster here; no scaler needed, the
    weights and the optimizer stay fp32), a checkpoint every `cfg.checkpoint_every` iterations (and at the end),
    samples and the loss curve every `cfg.sample_every`. Returns the loss history (one dict per iteration)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.float16
    if cfg.amp and device.type == "cpu":
        from impasto.device import cpu_has_bf16

        use_amp, amp_dtype = cpu_has_bf16(), torch.bfloat16
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and device.type == "cuda")
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict[str, float]] = []
    start = 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        scaler.load_state_dict(resume["scaler"])
        gen.set_state(resume["rng"]["data"])
        torch.set_rng_state(resume["rng"]["torch"])
        if "cuda" in resume["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(resume["rng"]["cuda"])
        history, start = list(resume["history"]), int(resume["iteration"])

    def checkpoint(it: int) -> None:
        save_checkpoint(out_dir / "latest.pt", model=model, model_args=model_args, config=cfg, optimizer=opt,
                        scaler=scaler, iteration=it, gen=gen, history=history)

    def side_outputs(it: int) -> None:
        keys = tuple(k for k in ("total", "content", "style", "pixel") if history and k in history[-1])
        loss_curve(history, out_dir / "loss.png", keys)
        (out_dir / "history.json").write_text(json.dumps(history))
        if write_samples is not None:
            model.eval()
            with torch.no_grad():
                write_samples(model, out_dir / f"samples_{it:06d}.png")
            model.train()

    from tqdm import tqdm

    bar = tqdm(total=cfg.iterations, initial=start, disable=not show_bar, unit="it", dynamic_ncols=True)
    # seconds keep counting across a resume, so history.json shows the run's whole training time
    t0 = time.monotonic() - (history[-1].get("seconds", 0.0) if history else 0.0)
    for it in range(start, cfg.iterations):
        if cancel is not None:
            cancel.check()
        for group in opt.param_groups:
            group["lr"] = lr_at(it, lr=cfg.lr, iterations=cfg.iterations, schedule=cfg.lr_schedule,
                                warmup=cfg.warmup)
        batch = next_batch(gen).to(device)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            loss, terms = compute_loss(model, batch)
        if not math.isfinite(terms["total"]):
            raise FloatingPointError(f"loss became {terms['total']} at iteration {it + 1}; lower --lr")
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        history.append({"iteration": it + 1, **terms, "seconds": round(time.monotonic() - t0, 3)})
        bar.update(1)
        bar.set_postfix({k: f"{v:.3g}" for k, v in terms.items()})
        if progress is not None:
            progress("train", (it + 1) / cfg.iterations)
        done = it + 1 == cfg.iterations
        if cfg.checkpoint_every and ((it + 1) % cfg.checkpoint_every == 0 or done):
            checkpoint(it + 1)
        if cfg.sample_every and ((it + 1) % cfg.sample_every == 0 or done):
            side_outputs(it + 1)
    bar.close()
    model.eval()
    return history
