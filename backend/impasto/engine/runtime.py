"""Runtimes for the feed-forward networks: OpenVINO on the CPU, torch everywhere else and as the reference.

On this project's CPUs OpenVINO runs the style network at 1024x1024 about 13x faster than eager fp32 torch
(issue 13), with dynamic spatial shapes, so a new image size costs no compile. A network is converted once
(`openvino.convert_model` from the torch module, see engine/export.py) and kept on disk in the user cache
folder, keyed by the model's sha256, the OpenVINO version, the precision and EXPORT_VERSION; an entry that
does not read back, or whose files do not match their recorded hashes, is rebuilt. Where OpenVINO cannot be
imported or a network does not convert, the engine runs torch and says so in one log line.

Reduced precision is measured, not assumed: a fresh bf16 conversion is compared with fp32 torch on a bundled
photo, and a network whose largest difference there exceeds BF16_MAX_LEVELS runs in f32 instead (the Engstrom
style nets: their bf16 residual convolutions alone move isolated pixels by 7-12 levels at 1024x1024, and the
tanh*150 output amplifies it)."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from impasto.cancel import CancelToken
from impasto.engine import whole
from impasto.engine.export import PlanModule, Unsupported, export_module
from impasto.errors import InvalidArgument
from impasto.models.fileformat import sha256_file
from impasto.nets.spec import NetSpec, Network, spec_of

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "openvino", "torch")
EXPORT_VERSION = 2  # bump when the exported graph or the entry format changes: older entries are rebuilt
CACHE_ENV = "IMPASTO_CACHE"
# fp32 OpenVINO must reproduce torch this closely (levels of 255) on the check run after a conversion; a graph
# that traced wrong (a size frozen at the example's) is off by tens of levels.
CHECK_LEVELS = 0.5
BF16_MAX_LEVELS = 0.015 * 255  # bf16 only where it stays this close to fp32 (issue 13 allows 2% at 1024x1024)
POLL_MS = 100  # how often a running inference looks at its cancel token (and reports progress)
MIN_RATE_MPX = 0.06  # calls this big (~256x256) or more measure the rate that progress estimates from
PROGRESS_CAP = 0.95  # a time-based estimate never claims more than this before the result is there
# the bundled sample photos: one alone does not predict the largest difference on other photos (measured:
# wreck 2.6 levels on astronaut, 6.4 on chelsea)
CALIBRATION_PHOTOS = tuple(Path(__file__).resolve().parent.parent / "data" / "samples" / f"{name}.png"
                           for name in ("astronaut", "chelsea", "coffee"))
_PRECISE = "precise_0"  # rt_info key that save_model writes as DisablePrecisionConversion: the CPU plugin keeps f32

_cancel: contextvars.ContextVar[CancelToken | None] = contextvars.ContextVar("impasto_cancel", default=None)

__all__ = ["RUNTIMES", "OpenVINONet", "Unsupported", "cancel_scope", "choose_runtime", "prepare"]


# ---- choosing ----


def check_runtime(name: str) -> str:
    if name not in RUNTIMES:
        raise InvalidArgument(f"unknown runtime {name!r}", hint="use auto, openvino or torch")
    return name


def openvino_version() -> str | None:
    """The importable OpenVINO's version, or None (not installed, or its native libraries do not load)."""
    try:
        import openvino as ov
    except Exception as exc:  # ImportError, or OSError from a native library on an unsupported platform
        log.debug("openvino does not import: %s", exc)
        return None
    return str(ov.get_version())


def choose_runtime(requested: str, device: torch.device, *, compile: bool = False) -> str:
    """'openvino' or 'torch' for `requested` on `device`. `auto`: OpenVINO on the CPU unless torch.compile
    was asked for; torch on CUDA and MPS. A CPU without a loadable OpenVINO falls back to torch (one log line)."""
    check_runtime(requested)
    if requested == "torch" or (requested == "auto" and (device.type != "cpu" or compile)):
        return "torch"
    if device.type != "cpu":
        raise InvalidArgument(f"the OpenVINO runtime runs on the CPU, not on {device}",
                              hint="use --runtime torch (or auto) with this device, or --device cpu")
    if openvino_version() is None:
        log.warning("OpenVINO is not available on this platform; running the networks on torch")
        return "torch"
    return "openvino"


def precision_for(autocast: torch.dtype | None) -> str:
    """OpenVINO inference precision for the engine's autocast choice: bf16 where the engine would autocast to
    bf16 on a CPU with native bf16, else f32 (exact)."""
    from impasto.device import cpu_has_bf16

    return "bf16" if autocast == torch.bfloat16 and cpu_has_bf16() else "f32"


# ---- the disk cache ----


def cache_root() -> Path:
    """The user cache folder ($IMPASTO_CACHE, else the platform's, e.g. ~/.cache/impasto)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("impasto", appauthor=False))


def module_sha(net: nn.Module) -> str:
    """A content hash of a network (class and weights), for networks that do not come from the store."""
    h = hashlib.sha256(type(net).__qualname__.encode())
    for name, t in sorted(net.state_dict().items()):
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def entry_dir(sha: str, precision: str, version: str) -> Path:
    tag = re.sub(r"[^0-9A-Za-z.]+", "_", version.split("-")[0])
    return cache_root() / "openvino" / f"{sha[:32]}-{precision}-ov{tag}-x{EXPORT_VERSION}"


@dataclass(frozen=True)
class Entry:
    model: Any  # ov.Model
    precision: str  # what it compiles with: the one asked for, or f32 where bf16 measured too coarse
    bf16_levels: float | None  # bf16's largest difference from fp32 torch on the calibration photo


def _read_entry(folder: Path, version: str) -> Entry | None:
    """The cached entry, or None when it is missing, stale or damaged (the caller rebuilds it)."""
    meta_path = folder / "entry.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("openvino") != version or meta.get("export_version") != EXPORT_VERSION:
            return None
        for name in ("model.xml", "model.bin"):
            if sha256_file(folder / name) != meta["files"][name]:
                return None
        return Entry(_read_model(folder / "model.xml"), meta["precision"], meta["bf16_levels"])
    except Exception as exc:  # any damage at all means: rebuild
        log.info("rebuilding the OpenVINO cache entry %s (%s)", folder.name, exc)
        return None


def stage_entry(folder: Path) -> tuple[Path, Path]:
    """(a new temporary folder beside `folder`, where it goes when complete). A cache entry is written in the
    temporary folder and renamed into place by `commit_entry`, so readers see no entry or a whole one and two
    processes building the same entry both end with a valid one. A cache that cannot be written gets a private
    temporary folder and Path() (nothing is kept: a rebuild per process, nothing else)."""
    try:
        tmp = folder.with_name(f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.mkdir(parents=True)
        return tmp, folder
    except OSError as exc:
        import tempfile

        log.warning("cannot write the OpenVINO cache in %s (%s)", folder.parent, exc)
        return Path(tempfile.mkdtemp(prefix="impasto-ov-")), Path()


def commit_entry(tmp: Path, folder: Path, meta: dict[str, Any]) -> None:
    """Write the entry's entry.json into `tmp` and rename it to `folder` (see `stage_entry`); the caller removes
    `tmp` afterwards in any case (gone once renamed)."""
    (tmp / "entry.json").write_text(json.dumps(meta, indent=1))
    if folder != Path():
        shutil.rmtree(folder, ignore_errors=True)  # stale or damaged: replaced
        with contextlib.suppress(OSError):  # another process put the same entry there first
            os.rename(tmp, folder)


def _build_entry(folder: Path, net: nn.Module, precision: str, version: str) -> Entry:
    """Convert, check and measure in a temporary folder, then rename it into place: readers see no entry or a
    whole one, and two processes converting the same model at once both end with a valid entry."""
    import openvino as ov

    tmp, folder = stage_entry(folder)
    try:
        ov.save_model(convert(net, precision), str(tmp / "model.xml"), compress_to_fp16=False)
        model = _read_model(tmp / "model.xml")  # checked as every later process will read it
        _check(net, model)
        entry = Entry(model, precision, None)
        if precision == "bf16":
            levels = _bf16_levels(net, model)
            entry = Entry(model, "bf16" if levels <= BF16_MAX_LEVELS else "f32", levels)
            if entry.precision != precision:
                log.info("bf16 moves this network's output by up to %.1f levels; it runs in f32", levels)
        files = {name: sha256_file(tmp / name) for name in ("model.xml", "model.bin")}
        commit_entry(tmp, folder, {"openvino": version, "export_version": EXPORT_VERSION, "files": files,
                                   "precision": entry.precision, "bf16_levels": entry.bf16_levels})
        return entry
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone once renamed; the model read from it stays readable


def load_model(net: nn.Module, sha: str, precision: str) -> Entry:
    """The converted network, from the disk cache or converted, checked and cached now."""
    version = openvino_version()
    if version is None:
        raise Unsupported("OpenVINO does not load here")
    folder = entry_dir(sha, precision, version)
    return _read_entry(folder, version) or _build_entry(folder, net, precision, version)


# ---- conversion and checks ----


def _example(net: nn.Module, h: int, w: int) -> torch.Tensor:
    m = spec_of(net).multiple
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, h * m, w * m, generator=g) * 255


def convert(net: nn.Module, precision: str = "f32") -> Any:
    """Convert `net` to an ov.Model with a (1, 3, H, W) input of any H, W."""
    import openvino as ov

    module = export_module(net).eval()
    with torch.no_grad(), warnings.catch_warnings():
        # torch.jit.trace's deprecation and tracer warnings say nothing a user can act on: the converted graph
        # is checked against torch at another size right after conversion
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        # traced here, without the trace check: 3x faster than handing convert_model the module (measured on
        # the bundled styles: 2.3 s against 7.6 s); the converted graph is checked against torch afterwards
        traced = torch.jit.trace(module, _example(net, 16, 16), check_trace=False)
    model = ov.convert_model(traced, input=[ov.PartialShape([1, 3, -1, -1])])
    if precision == "bf16" and isinstance(module, PlanModule):
        # keep f32 what the torch path keeps fp32 under autocast (the head convs, instance norms); measured
        # on the bundled styles this halves udnie's largest bf16 difference
        prefixes = tuple(f"__module.layers.{i}/" for i in module.precise_layers())
        for node in model.get_ordered_ops():
            if node.get_friendly_name().startswith(prefixes):
                node.get_rt_info()[_PRECISE] = ""
    return model


def _core() -> Any:
    import openvino as ov

    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            _CORE = ov.Core()
        return _CORE


_CORE: Any = None
_CORE_LOCK = threading.Lock()


def _read_model(xml: Path) -> Any:
    # weights read into memory, not mapped: a cache file replaced or damaged later cannot touch a loaded model
    return _core().read_model(str(xml), config={"ENABLE_MMAP": False})


def compile_model(model: Any, precision: str, threads: int | None = None) -> Any:
    # as many threads as torch uses: batch workers share the cores out with torch.set_num_threads
    config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
              "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads())}
    return _core().compile_model(model, "CPU", config)


def _torch_fp32(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode(), torch.autocast("cpu", enabled=False):
        return net(x).float()


def _check(net: nn.Module, model: Any) -> None:
    """Run a fresh conversion in f32 at a size other than the example's and compare with torch."""
    x = _example(net, 13, 11) if spec_of(net).multiple > 1 else _example(net, 51, 37)
    want = _torch_fp32(net, x)
    got = torch.from_numpy(compile_model(model, "f32")(x.numpy())[0])
    if got.shape != want.shape:
        raise Unsupported(f"the converted network returns {tuple(got.shape)}, torch {tuple(want.shape)}")
    diff = float((got - want).abs().max())
    if not diff <= CHECK_LEVELS:
        raise Unsupported(f"the converted network differs from torch by {diff:.3g} levels")


def _bf16_levels(net: nn.Module, model: Any) -> float:
    """bf16's largest difference from fp32 torch (levels of 255, both clamped as the engine clamps) on the
    calibration photos: a style net sees each at 256x256, an SR net upscales it from 64x64."""
    import numpy as np
    from PIL import Image

    side = 64 if spec_of(net).plan is None else 256  # SR nets output scale x the input
    compiled, worst = compile_model(model, "bf16"), 0.0
    for path in CALIBRATION_PHOTOS:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB").resize((side, side), Image.Resampling.BICUBIC), dtype=np.float32)
        x = torch.from_numpy(arr.transpose(2, 0, 1).copy())[None]
        want = _torch_fp32(net, x).clamp(0, 255)
        got = torch.from_numpy(compiled(x.numpy())[0]).clamp(0, 255)
        worst = max(worst, float((got - want).abs().max()))
    return worst


# ---- running ----


class OpenVINONet(Network):
    """A network compiled by OpenVINO, called like the torch module: (1, 3, H, W) float32 in and out, on the CPU.

    It describes itself with the torch module's NetSpec, so the SR halo-window path runs it as it runs the torch
    module. A cancel token set with `cancel_scope` stops a running inference."""

    def __init__(self, compiled: Any, like: nn.Module, precision: str):
        super().__init__()
        self.compiled, self.precision = compiled, precision
        self._spec, self.arch = spec_of(like), getattr(like, "arch", "")
        self._sec_per_mpx: float | None = None  # measured on the last call of at least MIN_RATE_MPX (progress)

    @property
    def spec(self) -> NetSpec:
        return self._spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run one inference, polling every POLL_MS: the cancel token of `cancel_scope` (a cancel or deadline
        stops the inference within about POLL_MS) and, inside `whole.network_progress`, progress.

        OpenVINO says nothing about how far an inference has got, so progress is an honest time estimate:
        fraction = elapsed / expected, where expected is the seconds per megapixel measured on this net's
        earlier calls (of at least MIN_RATE_MPX, below which fixed overhead dominates) times this call's
        megapixels, capped at PROGRESS_CAP until the result is there. Before any such call has been measured
        there is nothing to base an estimate on: the fraction stays 0 (the stage still shows the work started),
        rather than inventing a curve."""
        import openvino as ov

        arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
        # a request per call: the CPU plugin sizes a request's buffers to its last input, and a warm server
        # should not hold a 4096x4096 image's activations between jobs
        request = self.compiled.create_infer_request()
        request.set_input_tensor(ov.Tensor(arr, shared_memory=True))
        cancel, report = _cancel.get(), whole.current_progress()
        if cancel is not None:
            cancel.check()
        mpx = x.shape[-2] * x.shape[-1] / 1e6
        expected = self._sec_per_mpx * mpx if self._sec_per_mpx is not None else None
        started = time.monotonic()
        request.start_async()
        try:
            while not request.wait_for(POLL_MS):  # cancel and deadlines are seen within about POLL_MS
                if cancel is not None:
                    cancel.check()
                if report is not None:
                    progress, stage = report
                    elapsed = time.monotonic() - started
                    progress(stage, 0.0 if expected is None else min(elapsed / max(expected, 1e-6), PROGRESS_CAP))
        except BaseException:
            request.cancel()
            # wait for the cancelled inference to end: a request destroyed (or a process exiting) while its
            # inference still runs on OpenVINO's threads aborts the process ("terminate called without ...")
            with contextlib.suppress(Exception):
                request.wait()
            raise
        if mpx >= MIN_RATE_MPX:
            self._sec_per_mpx = (time.monotonic() - started) / mpx
        return torch.from_numpy(request.get_output_tensor(0).data.copy())


@contextlib.contextmanager
def cancel_scope(cancel: CancelToken | None) -> Iterator[None]:
    """OpenVINO inferences started in this block (this thread) stop when `cancel` fires."""
    token = _cancel.set(cancel)
    try:
        yield
    finally:
        _cancel.reset(token)


def prepare(net: nn.Module, precision: str, sha: str | None = None, threads: int | None = None) -> OpenVINONet:
    """Convert (or read from the cache) and compile `net` for `precision` ('bf16' may measure out as f32).
    Raises on any failure; the engine then runs torch."""
    entry = load_model(net, sha or module_sha(net), precision)
    return OpenVINONet(compile_model(entry.model, entry.precision, threads), net, entry.precision)
