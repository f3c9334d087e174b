"""Convert the tfjs "layers" export of Keras' VGG-19 (DavidCai1993/vgg19-tensorflowjs-model) into the
safetensors file the package ships (``impasto/data/loss_nets/vgg19_partial.safetensors``).

Run once by a developer, never at run time::

    python -m impasto.nets.vgg_tfjs ../shared/data/weights/vgg19_partial_tfjs \
        backend/impasto/data/loss_nets/vgg19_partial.safetensors

tfjs layout: ``model.json`` -> ``weightsManifest`` lists groups; a group's shards, concatenated, hold raw
little-endian float32 tensors in manifest order. Keras kernels are HWIO; PyTorch wants OIHW. Only groups whose
shards are all present are converted (the snapshot stops at block3_conv4).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from impasto.nets.vgg import _CFG_VGG19, _make_features, layer_names


def read_tfjs_weights(src: Path) -> dict[str, np.ndarray]:
    """All tensors of the complete groups, by Keras name (``block1_conv1/kernel``), as float32 arrays."""
    manifest = json.loads((src / "model.json").read_text())["weightsManifest"]
    out: dict[str, np.ndarray] = {}
    for group in manifest:
        shards = [src / p for p in group["paths"]]
        if not all(s.is_file() for s in shards):
            continue
        blob = b"".join(s.read_bytes() for s in shards)
        offset = 0
        for w in group["weights"]:
            if w.get("dtype", "float32") != "float32" or "quantization" in w:
                raise ValueError(f"{w['name']}: only plain float32 tfjs weights are supported")
            n = int(np.prod(w["shape"]))
            arr = np.frombuffer(blob, dtype="<f4", count=n, offset=offset).reshape(w["shape"])
            out[w["name"]] = arr.copy()
            offset += 4 * n
        if offset != len(blob):
            raise ValueError(f"group {group['paths']}: {len(blob) - offset} bytes left over")
    return out


def torch_state_dict(keras: dict[str, np.ndarray], dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """Keras names -> torchvision ``features.N.weight`` keys (OIHW), in `dtype`."""
    convs = [n for n in layer_names(_CFG_VGG19) if n.startswith("conv")]
    present = [c for c in convs if f"block{c[4]}_conv{c.split('_')[1]}/kernel" in keras]
    features, names = _make_features(_CFG_VGG19, len(present))
    sd: dict[str, torch.Tensor] = {}
    for conv in present:
        block, idx = conv[4], conv.split("_")[1]
        kernel = keras[f"block{block}_conv{idx}/kernel"]  # (3, 3, Cin, Cout)
        bias = keras[f"block{block}_conv{idx}/bias"]
        i = names.index(conv)
        sd[f"features.{i}.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()).to(dtype)
        sd[f"features.{i}.bias"] = torch.from_numpy(bias).to(dtype)
    # Fail here rather than at load time if the mapping and the architecture disagree.
    features.load_state_dict({k.removeprefix("features."): v.float() for k, v in sd.items()})
    return sd


def convert(src: Path, dst: Path, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    from safetensors.torch import save_file

    sd = torch_state_dict(read_tfjs_weights(src), dtype)
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        sd,
        str(dst),
        metadata={
            "arch": "vgg19",
            "layers": "conv1_1..conv3_4",
            "preprocessing": "BGR, 0-255, mean [103.939, 116.779, 123.68]",
            "license": "CC BY 4.0 (Simonyan & Zisserman, VGG-19); MIT (DavidCai1993/vgg19-tensorflowjs-model)",
        },
    )
    return sd


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path, help="folder with model.json and group*-shard* files")
    p.add_argument("dst", type=Path, help="output .safetensors")
    p.add_argument("--fp32", action="store_true", help="keep float32 (default float16, half the size)")
    a = p.parse_args(argv)
    sd = convert(a.src, a.dst, torch.float32 if a.fp32 else torch.float16)
    params = sum(t.numel() for t in sd.values())
    print(f"wrote {a.dst}: {len(sd) // 2} convs, {params:,} parameters, {a.dst.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
