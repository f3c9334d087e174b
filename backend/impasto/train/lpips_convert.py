"""Build ``impasto/data/loss_nets/lpips_squeeze.safetensors``: the SqueezeNet 1.1 features from an ncnn export
of torchvision's ImageNet weights plus the seven LPIPS v0.1 linear heads of the ``lpips`` package.

Run once by a maintainer, never at run time (needs ``pip install lpips`` only to find its bundled heads file)::

    python -m impasto.train.lpips_convert ../shared/data/weights/squeezenet1_1_ncnn \\
        backend/impasto/data/loss_nets/lpips_squeeze.safetensors

ncnn layout (``*.ncnn.param`` text, ``*.ncnn.bin`` raw): for every Convolution line, in order, the bin holds a
uint32 tag (0x01306B47 = float16 data follows), the weights (Cout, Cin, kh, kw) padded to 4 bytes, then the
float32 bias (Cout). Within each fire module the order is squeeze, expand1x1, expand3x3 (torchvision's order);
the last convolution is the ImageNet classifier, which LPIPS does not use and is left out.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

from impasto.train.lpips import LPIPS, TAP_CHANNELS

NCNN_FP16_TAG = 0x01306B47
FIRE_INDICES = (3, 4, 6, 7, 9, 10, 11, 12)  # positions of the fire modules in `features`


def _conv_lines(param: Path) -> list[dict[str, str]]:
    out = []
    for line in param.read_text().splitlines()[2:]:
        parts = line.split()
        if parts and parts[0] == "Convolution":
            n_in, n_out = int(parts[2]), int(parts[3])
            kv = dict(p.split("=", 1) for p in parts[4 + n_in + n_out:])
            kv["name"] = parts[1]
            out.append(kv)
    return out


def read_ncnn_convs(folder: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(layer name, weight (Cout, Cin, k, k) float32, bias float32) for every convolution, in param order."""
    param = next(folder.glob("*.ncnn.param"))
    blob = param.with_suffix(".bin").read_bytes()
    offset, convs = 0, []
    for kv in _conv_lines(param):
        cout, k, n = int(kv["0"]), int(kv["1"]), int(kv["6"])
        tag = int.from_bytes(blob[offset : offset + 4], "little")
        if tag != NCNN_FP16_TAG:
            raise ValueError(f"{kv['name']}: weight tag {tag:#x}; only float16 ncnn weights are supported")
        offset += 4
        w = np.frombuffer(blob, "<f2", n, offset).astype(np.float32)
        offset += (2 * n + 3) // 4 * 4
        bias = np.zeros(cout, np.float32)
        if kv.get("5", "0") == "1":
            bias = np.frombuffer(blob, "<f4", cout, offset).copy()
            offset += 4 * cout
        convs.append((kv["name"], w.reshape(cout, n // (cout * k * k), k, k), bias))
    if offset != len(blob):
        raise ValueError(f"{param.with_suffix('.bin')}: {len(blob) - offset} bytes left over")
    return convs


def squeezenet_state_dict(convs: list[tuple[str, np.ndarray, np.ndarray]]) -> dict[str, torch.Tensor]:
    """ncnn convolutions -> ``features.N...`` keys of :func:`impasto.train.lpips.squeezenet1_1_features`."""
    keys = ["features.0"] + [f"features.{i}.{part}" for i in FIRE_INDICES
                             for part in ("squeeze", "expand1x1", "expand3x3")]
    if len(convs) != len(keys) + 1:
        raise ValueError(f"expected {len(keys) + 1} convolutions (SqueezeNet 1.1), found {len(convs)}")
    sd: dict[str, torch.Tensor] = {}
    for key, (_, w, b) in zip(keys, convs, strict=False):  # the last conv (classifier) is dropped
        sd[f"{key}.weight"], sd[f"{key}.bias"] = torch.from_numpy(w.copy()), torch.from_numpy(b.copy())
    return sd


def lpips_heads(path: Path) -> dict[str, torch.Tensor]:
    """The linear heads ``lin{k}.model.1.weight`` (1, C, 1, 1) of the lpips package as ``lin.{k}.weight``."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return {f"lin.{k}.weight": sd[f"lin{k}.model.1.weight"].float() for k in range(len(TAP_CHANNELS))}


def default_heads_path() -> Path:
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        raise SystemExit("the lpips package is not installed: pip install lpips (only to read its weights)")
    return Path(spec.origin).parent / "weights" / "v0.1" / "squeeze.pth"


def convert(ncnn: Path, heads: Path, dst: Path, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    from safetensors.torch import save_file

    sd = {**squeezenet_state_dict(read_ncnn_convs(ncnn)), **lpips_heads(heads)}
    LPIPS().load_state_dict(sd)  # fail here, not at run time, if the mapping and the network disagree
    sd = {k: v.to(dtype).contiguous() for k, v in sd.items()}
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(dst), metadata={
        "arch": "lpips-v0.1-squeezenet1_1",
        "input": "RGB 0-255; scaled to [-1, 1] then (x - [-.030, -.088, -.188]) / [.458, .448, .450]",
        "license": "BSD-3-Clause (torchvision SqueezeNet 1.1 weights); BSD-2-Clause (lpips linear heads, "
                   "Zhang et al. 2018)",
    })
    return sd


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ncnn", type=Path, help="folder with squeezenet_v1.1.ncnn.param and .bin")
    p.add_argument("dst", type=Path, help="output .safetensors")
    p.add_argument("--heads", type=Path, help="lpips weights/v0.1/squeeze.pth (default: the installed package's)")
    p.add_argument("--fp32", action="store_true", help="keep float32 (default float16, half the size)")
    a = p.parse_args(argv)
    sd = convert(a.ncnn, a.heads or default_heads_path(), a.dst, torch.float32 if a.fp32 else torch.float16)
    params = sum(t.numel() for t in sd.values())
    print(f"wrote {a.dst}: {len(sd)} tensors, {params:,} parameters, {a.dst.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
