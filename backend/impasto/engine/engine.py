"""Transport-agnostic operations shared by the CLI, the gRPC server and batch jobs.

Each operation takes an editor buffer (`PixelBuffer`) and returns one in the same format; progress goes
to a `progress(stage, fraction)` callback and a `CancelToken` is checked between tiles and iterations."""

from __future__ import annotations

import io
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from impasto.cancel import CancelToken, Progress, no_progress
from impasto.device import autocast_dtype, channels_last_pays, memory_budget, pick_device
from impasto.engine import runtime, spill
from impasto.engine.pieces import Pieces
from impasto.engine.pixels import (
    BAND_ROWS,
    PixelBuffer,
    alpha_of,
    check_pixel_limit,
    from_network,
    new_buffer,
    put_rgb,
    resize_alpha,
    to_network,
)
from impasto.engine.staged import LayerPieces
from impasto.engine.tiling import RunConfig, run_network, run_streamed, streamed_input
from impasto.errors import InvalidArgument
from impasto.limits import (
    REFINE_DEFAULT,
    REFINE_MAX,
    REFINE_MIN,
    SCALE_DEFAULT,
    SCALE_MAX,
    SCALE_MIN,
    SR_SCALES,
    STRENGTH_DEFAULT,
    STRENGTH_MAX,
    STRENGTH_MIN,
)
from impasto.models.info import ModelInfo
from impasto.models.store import ModelStore
from impasto.nets.spec import spec_of

log = logging.getLogger(__name__)

# Preferred SR model per scale when the request names none; otherwise the first with that scale.
DEFAULT_SR = {2: ("impasto-sr-x2", "srgan-x2"), 4: ("impasto-sr-x4", "srgan-x4"), 8: ("impasto-sr-x8", "srgan-x8")}


@dataclass(frozen=True)
class EngineConfig:
    device: str = "auto"
    tile_size: int = 512
    memory_budget: int | None = None  # bytes of working memory per network call; None: from free memory
    bf16: bool | None = None  # reduced-precision autocast; None: where the device supports it
    compile: bool = False  # torch.compile the networks (pays a compile per new input shape)
    max_pixels: int = 64_000_000
    model_cache: int = 4
    runtime: str = "auto"  # auto | openvino | torch (engine/runtime.py): auto is OpenVINO on the CPU
    force_tiles: bool = False  # tile at tile_size even when the whole image fits (a user checking seams)
    # pixels of the image mirrored on every side before a style net runs, cut off after: the nets treat the
    # border of what they see differently (dark or light bands of up to 50 levels along an edge), so the border
    # they see is this far outside the picture (docs/quality.md, "Edge margin"). 0: the network's own edges.
    edge_margin: int = 32


def _clamp(y: torch.Tensor) -> torch.Tensor:
    """A network's result clamped to 0-255 in place: it is the network's own new tensor, and a clamped copy is
    805 MB at 8192x8192 (issue 13: an 8192x8192 stylize within 3 GB). In inference mode, where an inference
    tensor (the whole-image path's result) may be changed in place."""
    with torch.inference_mode():
        return y.clamp_(0, 255)


def _ycbcr(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return torch.stack([y, 128 - 0.168736 * r - 0.331264 * g + 0.5 * b, 128 + 0.5 * r - 0.418688 * g - 0.081312 * b], 1)


def _rgb(x: torch.Tensor) -> torch.Tensor:
    y, cb, cr = x[:, 0], x[:, 1] - 128, x[:, 2] - 128
    return torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)


def luminance_transfer(stylized: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Luminance-only transfer (Gatys et al. 2016, 'Preserving color in neural artistic style transfer'):
    the stylized luminance with the original chroma (BT.601 YCbCr)."""
    s, o = _ycbcr(stylized), _ycbcr(original)
    return _rgb(torch.cat([s[:, :1], o[:, 1:]], 1)).clamp(0, 255)


def _colour_and_strength(y: torch.Tensor, rgb: torch.Tensor, strength: float, preserve_colors: bool) -> torch.Tensor:
    """The stylized `y` with the original's colours (preserve_colors) and blended with it by `strength`: per pixel,
    so whole images and bands of rows get the same values."""
    if preserve_colors:
        y = luminance_transfer(y, rgb)
    if strength < 1.0:
        y = rgb + strength * (y - rgb)
    return y


def resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    if x.shape[-2:] == (h, w):
        return x
    return F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True).clamp(0, 255)


def bicubic_upscale(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Bicubic with a = -0.5 (Keys; MATLAB's imresize and Pillow's BICUBIC): the baseline the SR literature and
    `impasto eval sr` compare with. torch's bicubic uses a = -0.75, which scored 0.09-0.10 dB higher on Set5/Set14.
    Each channel is resized in float32 by Pillow, so 16-bit and float images keep their precision."""
    from PIL import Image

    planes = [np.asarray(Image.fromarray(c.numpy(), mode="F").resize((w, h), Image.Resampling.BICUBIC))
              for c in x[0].detach().to("cpu", torch.float32)]
    return torch.from_numpy(np.stack(planes))[None].clamp(0, 255)


class Engine:
    """The engine behind every front end. One call at a time per device (the server's queue serialises)."""

    def __init__(self, config: EngineConfig | None = None, store: ModelStore | None = None):
        self.config = config or EngineConfig()
        self.store = store or ModelStore()
        self.device = pick_device(self.config.device)
        self.runtime = runtime.choose_runtime(self.config.runtime, self.device, compile=self.config.compile)
        if self.runtime == "openvino" and self.config.compile:
            raise InvalidArgument("--compile is torch.compile, which the OpenVINO runtime does not use",
                                  hint="drop --compile, or add --runtime torch")
        log.info("engine: device %s, runtime %s", self.device, self.runtime)
        # name -> (sha256, the net run_network gets, the whole-image runner or None, the tiled path's pieces or None)
        self._cache: OrderedDict[str, tuple[str, nn.Module, nn.Module | None, Pieces | None]] = OrderedDict()
        self._capacity = self.config.model_cache
        self._lock = threading.Lock()

    @property
    def device_name(self) -> str:
        if self.device.type == "cuda":
            return f"{self.device} ({torch.cuda.get_device_name(self.device)})"
        return str(self.device)

    def run_config(self) -> RunConfig:
        cfg = self.config
        return RunConfig(device=self.device, tile=cfg.tile_size, budget=memory_budget(self.device, cfg.memory_budget),
                         autocast=autocast_dtype(self.device, cfg.bf16), force_tiles=cfg.force_tiles)

    # ---- models ----

    def models(self, kind: str | None = None) -> list[ModelInfo]:
        return self.store.list(kind)

    def operations(self) -> list[str]:
        return ["stylize", "upscale", "refine", "gatys"]

    def _network(self, info: ModelInfo) -> tuple[nn.Module, nn.Module | None, Pieces | None]:
        """(net, whole, pieces) for `run_network(net, ..., compiled=whole, convs=pieces)`, loaded once and kept (LRU).

        On OpenVINO a style net stays torch for the exact tiled path's window arithmetic, statistics and pointwise
        steps, gets the OpenVINO net as its whole-image runner and its layers' convolutions as OpenVINO pieces
        (engine/pieces.py, at the precision the whole net measured acceptable; built on the first tiled run); an
        SR net *is* the OpenVINO net (its halo windows are whole-image calls too)."""
        with self._lock:
            hit = self._cache.get(info.name)
            if hit and hit[0] == info.sha256:
                self._cache.move_to_end(info.name)
                return hit[1], hit[2], hit[3]
            net = self.store.load(info.name, self.device)
            plan = spec_of(net).plan
            fast = self._openvino(info, net) if self.runtime == "openvino" else None
            if fast is None and channels_last_pays(self.device, plan is not None):
                net = net.to(memory_format=torch.channels_last)
            entry: tuple[nn.Module, nn.Module | None, Pieces | None] = (net, None, None)
            if fast is not None and plan is not None:
                entry = (net, fast, Pieces(plan, info.sha256 or runtime.module_sha(net), fast.precision))
            elif fast is not None:
                entry = (fast, None, None)
            elif self.config.compile:
                entry = (net, torch.compile(net, dynamic=False), None)  # type: ignore[assignment]
            self._cache[info.name] = (info.sha256, *entry)
            while len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
            return entry

    def _openvino(self, info: ModelInfo, net: nn.Module) -> runtime.OpenVINONet | None:
        precision = runtime.precision_for(autocast_dtype(self.device, self.config.bf16))
        try:
            return runtime.prepare(net, precision, info.sha256 or None)
        except Exception as exc:  # a network OpenVINO cannot take runs on torch, as before
            log.warning("model %s does not run on OpenVINO here (%s: %s); using torch", info.name,
                        type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
            return None

    def default_models(self) -> list[ModelInfo]:
        """What `impasto serve --warmup` prepares: every bundled style and the default SR model per scale."""
        infos = [m for m in self.store.list("style") if m.bundled]
        for scale in SR_SCALES:
            try:
                infos.append(self.default_sr_model(scale))
            except InvalidArgument:  # no model for this scale
                pass
        return infos

    def warmup(self, names: Sequence[str] | None = None) -> list[str]:
        """Load, convert (once, cached on disk) and compile models now, and keep them all loaded, so that the
        first requests do not wait for it; a small run of each pays the one-time kernel set-up too. On OpenVINO
        that run is 256x256, big enough to measure the speed that the first real job's progress is estimated
        from (an OpenVINO inference reports nothing while it runs; see runtime.OpenVINONet.forward)."""
        infos = [self.store.get(n) for n in names] if names else self.default_models()
        self._capacity = max(self._capacity, len(infos))
        for info in infos:
            net, whole, pieces = self._network(info)
            side = 256 if isinstance(whole or net, runtime.OpenVINONet) else 32
            run_network(net, torch.full((1, 3, side, side), 128.0), self.run_config(), compiled=whole)
            if pieces is not None and self.config.force_tiles:
                pieces.compiled()  # the tiled path is the one this engine runs
        return [i.name for i in infos]

    def default_sr_model(self, scale: int) -> ModelInfo:
        candidates = [m for m in self.store.list("sr") if m.scale == scale]
        for name in DEFAULT_SR.get(scale, ()):
            for m in candidates:
                if m.name == name:
                    return m
        if not candidates:
            raise InvalidArgument(f"no super-resolution model for x{scale}",
                                  hint="use --model bicubic, or import one with `impasto models import`")
        return candidates[0]

    # ---- checks ----

    def check_size(self, width: int, height: int, what: str = "image") -> None:
        check_pixel_limit(width, height, self.config.max_pixels, f"the {what}")

    # ---- operations ----

    def stylize(
        self,
        image: PixelBuffer,
        style: str,
        *,
        strength: float = STRENGTH_DEFAULT,
        preserve_colors: bool = False,
        scale: float = SCALE_DEFAULT,
        refine: int = REFINE_DEFAULT,
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
    ) -> PixelBuffer:
        """Feed-forward stylization (Johnson et al. 2016), optionally refined by Gatys iterations."""
        progress = progress or no_progress
        if not STRENGTH_MIN <= strength <= STRENGTH_MAX:
            raise InvalidArgument(f"strength must be between {STRENGTH_MIN:g} and {STRENGTH_MAX:g}, got {strength}")
        if not SCALE_MIN <= scale <= SCALE_MAX:
            raise InvalidArgument(f"scale must be between {SCALE_MIN:g} and {SCALE_MAX:g}, got {scale}")
        if not REFINE_MIN <= refine <= REFINE_MAX:
            raise InvalidArgument(f"refine must be between {REFINE_MIN} and {REFINE_MAX} iterations, got {refine}")
        info = self.store.get(style, "style")
        self.check_size(image.width, image.height)
        h, w = image.height, image.width
        ph, pw = max(1, round(h * scale)), max(1, round(w * scale))
        self.check_size(pw, ph, "processing size")
        progress("loading", 0.0)
        net, compiled, pieces = self._network(info)
        m = min(self.config.edge_margin, ph - 1, pw - 1)  # reflection needs an image wider than the margin
        src = streamed_input(net, image, self.run_config(), m) if (ph, pw) == (h, w) and refine == 0 else None
        if src is not None:
            return self._stylize_streamed(src, image, net, pieces, strength, preserve_colors, progress, cancel)
        rgb, alpha = to_network(image)
        x = resize(rgb, ph, pw)
        with runtime.cancel_scope(cancel):
            xm = F.pad(x, (m, m, m, m), mode="reflect") if m > 0 else x
            y = run_network(net, xm, self.run_config(), progress, cancel, "stylize", compiled, pieces)
            del xm
            y = _clamp(y[..., m : m + ph, m : m + pw])
        if refine > 0:
            y = self._refine(info, x, y, refine, progress, cancel)
        y = _colour_and_strength(resize(y, h, w), rgb, strength, preserve_colors)
        if cancel is not None:
            cancel.check()
        progress("stylize", 1.0)
        return from_network(y, alpha, image.format)

    def _stylize_streamed(self, src: spill.Source, image: PixelBuffer, net: nn.Module, pieces: LayerPieces | None,
                          strength: float, preserve_colors: bool, progress: Progress,
                          cancel: CancelToken | None) -> PixelBuffer:
        """`stylize` of a large image on the tiled path with neither its float32 input nor its output in memory
        (`tiling.streamed_input`): the network reads windows of the buffer, and the result is encoded band by band
        from the output the tiled path kept, the colour and strength steps applied per band (they are per pixel,
        so the values are those of the whole-tensor steps)."""
        with runtime.cancel_scope(cancel):
            y = run_streamed(net, src, self.run_config(), progress, cancel, "stylize", pieces)
        try:
            h, w, m = image.height, image.width, src.margin
            out = new_buffer(h, w, alpha_of(image), image.format)
            for r0 in range(0, h, BAND_ROWS):
                if cancel is not None:
                    cancel.check()
                r1 = min(h, r0 + BAND_ROWS)
                band = spill.read(y, r0 + m, r1 + m, m, m + w).float().clamp(0, 255)
                if preserve_colors or strength < 1.0:
                    band = _colour_and_strength(band, src.read(r0 + m, r1 + m, m, m + w), strength,
                                                preserve_colors)
                put_rgb(out, r0, band)
        finally:
            if isinstance(y, spill.Spilled):
                y.close()
        progress("stylize", 1.0)
        return out

    def _refine(self, info: ModelInfo, content: torch.Tensor, init: torch.Tensor, iterations: int,
                progress: Progress, cancel: CancelToken | None) -> torch.Tensor:
        from impasto.train import gatys

        if not info.style_image_jpeg:
            raise InvalidArgument(f"style {info.name!r} carries no style image, so it cannot be refined",
                                  hint="use --refine 0, or `impasto gatys` with the style image")
        style = decode_rgb(info.style_image_jpeg)
        # the loss network in the engine's reduced precision where it has one (bf16: same loss curve, about
        # 1.5x faster on a CPU with AVX512-BF16; docs/training.md)
        out = gatys.refine(content.to(self.device), init.to(self.device), style.to(self.device),
                           iterations=iterations, device=self.device,
                           autocast=autocast_dtype(self.device, self.config.bf16),
                           progress=lambda s, f: progress("refine", f), cancel=cancel).image
        return out.detach().float().cpu().clamp(0, 255)

    def upscale(
        self,
        image: PixelBuffer,
        scale: int,
        *,
        model: str | None = None,
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
    ) -> PixelBuffer:
        """Super-resolution by `scale` (2, 4 or 8) with an SR network, or plain bicubic ("bicubic")."""
        progress = progress or no_progress
        if scale not in SR_SCALES:
            raise InvalidArgument(f"scale must be 2, 4 or 8, got {scale}")
        self.check_size(image.width, image.height)
        h, w = image.height * scale, image.width * scale
        self.check_size(w, h, "upscaled image")
        rgb, alpha = to_network(image)
        if model == "bicubic":
            y = bicubic_upscale(rgb, h, w)
        else:
            info = self.default_sr_model(scale) if not model else self.store.get(model, "sr")
            if info.scale != scale:
                raise InvalidArgument(f"model {info.name!r} upscales x{info.scale}, not x{scale}")
            progress("loading", 0.0)
            net, compiled, _ = self._network(info)
            with runtime.cancel_scope(cancel):
                y = _clamp(run_network(net, rgb, self.run_config(), progress, cancel, "upscale", compiled))
        if alpha is not None:
            alpha = resize_alpha(alpha, h, w)
        progress("upscale", 1.0)
        return from_network(y, alpha, image.format)

    def gatys(
        self,
        content: PixelBuffer,
        style: PixelBuffer,
        *,
        iterations: int = 150,
        content_weight: float | None = None,
        style_weight: float | None = None,
        init: str = "content",
        max_size: int = 0,
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
    ) -> PixelBuffer:
        """Style transfer by optimisation (Gatys et al. 2016) from any style image; no trained network."""
        from impasto.train import gatys

        if not 1 <= iterations <= 5000:
            raise InvalidArgument(f"iterations must be between 1 and 5000, got {iterations}")
        if init not in ("content", "noise"):
            raise InvalidArgument(f"init must be 'content' or 'noise', got {init!r}")
        if max_size < 0 or max_size > 4096:
            raise InvalidArgument(f"max_size must be between 0 (default) and 4096, got {max_size}")
        for name, weight in (("content_weight", content_weight), ("style_weight", style_weight)):
            if weight is not None and not (math.isfinite(weight) and weight >= 0):  # NaN gave a black image
                raise InvalidArgument(f"{name} must be a finite number of at least 0, got {weight}")
        self.check_size(content.width, content.height)
        self.check_size(style.width, style.height, "style image")
        rgb, alpha = to_network(content)
        style_rgb, _ = to_network(style)
        h, w = rgb.shape[-2:]
        side = max_size or 512
        k = min(1.0, side / max(h, w))
        x = resize(rgb, max(1, round(h * k)), max(1, round(w * k)))
        ks = min(1.0, side / max(style_rgb.shape[-2:]))
        s = resize(style_rgb, max(1, round(style_rgb.shape[2] * ks)), max(1, round(style_rgb.shape[3] * ks)))
        weights = {}
        if content_weight is not None:
            weights["content_weight"] = content_weight
        if style_weight is not None:
            weights["style_weight"] = style_weight
        result = gatys.run(x.to(self.device), s.to(self.device), init=init, iterations=iterations,
                           device=self.device, progress=progress, cancel=cancel, **weights)  # type: ignore[arg-type]
        y = resize(result.image.detach().float().cpu().clamp(0, 255), h, w)
        return from_network(y, alpha, content.format)



def decode_rgb(data: bytes) -> torch.Tensor:
    """An encoded image (e.g. a model's embedded style JPEG) as a (1, 3, H, W) float32 RGB 0-255 tensor."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())[None]
