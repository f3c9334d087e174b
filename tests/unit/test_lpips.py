"""LPIPS-squeeze (impasto.train.lpips) against the reference implementation (the `lpips` package, v0.1).

Two comparisons:
* live: the reference's own network object (`lpips.LPIPS(net="squeeze", pnet_rand=True)`, so torchvision downloads
  nothing), its SqueezeNet trunk filled by hand with the float32 weights read from the ncnn files in shared data;
  our implementation with the same float32 weights must agree to float rounding, and with the shipped fp16 file
  to 2e-4.
* recorded: REFERENCE below holds the values that same reference setup gave for the same pairs (lpips 0.1.4,
  torch 2.14.1, CPU, float32), so the shipped file is checked without shared data or the lpips package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from impasto.train.lpips import LPIPS, LPIPSMetric, default_weights_path, load_lpips
from PIL import Image

SAMPLE = Path(__file__).parents[2] / "backend" / "impasto" / "data" / "samples" / "chelsea.png"
# Recorded with the reference as in test_matches_the_reference_implementation (see the module docstring).
REFERENCE = {"noise": 0.279042, "bicubic_x4": 0.317735, "flipped": 0.433780}


def _pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    a = np.asarray(Image.open(SAMPLE).convert("RGB"))  # 300x200
    noisy = np.clip(a + np.random.default_rng(0).normal(0, 10, a.shape), 0, 255).astype(np.uint8)
    small = Image.fromarray(a).resize((75, 50), Image.Resampling.BICUBIC)
    blurry = np.asarray(small.resize((300, 200), Image.Resampling.BICUBIC))
    return {"noise": (a, noisy), "bicubic_x4": (a, blurry), "flipped": (a, a[:, ::-1].copy())}


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x.astype(np.float32)).permute(2, 0, 1)[None]


def test_shipped_weights_give_the_recorded_reference_values() -> None:
    metric = LPIPSMetric()
    for name, (a, b) in _pairs().items():
        assert metric(a, b) == pytest.approx(REFERENCE[name], abs=2e-4), name


def test_shipped_file_is_small_and_half_precision() -> None:
    from safetensors.torch import load_file

    path = default_weights_path()
    assert path.stat().st_size < 2_000_000
    tensors = load_file(str(path))
    assert {t.dtype for t in tensors.values()} == {torch.float16}
    assert sum(t.numel() for t in tensors.values()) == 724_736  # SqueezeNet 1.1 features + 7 heads (2,240)


def test_distance_properties() -> None:
    metric = LPIPSMetric()
    a, noisy = (v[:96, :128] for v in _pairs()["noise"])
    assert metric(a, a) == pytest.approx(0.0, abs=1e-6)
    assert metric(a, noisy) == pytest.approx(metric(noisy, a), rel=1e-5)
    rng = np.random.default_rng(3)
    more = np.clip(a + rng.normal(0, 30, a.shape), 0, 255).astype(np.uint8)
    assert metric(a, more) > metric(a, noisy) > 0.05  # type: ignore[operator]
    assert metric(a[:20, :20], noisy[:20, :20]) is None  # too small for the deepest feature map
    with pytest.raises(ValueError):
        metric(a, a[:50])


@pytest.mark.filterwarnings("ignore:.*(pretrained|weight enum).*:UserWarning")  # lpips' old torchvision call
def test_matches_the_reference_implementation(shared: Path) -> None:
    import lpips  # the reference (test extra)
    from impasto.train.lpips_convert import default_heads_path, lpips_heads, read_ncnn_convs, squeezenet_state_dict

    sd = squeezenet_state_dict(read_ncnn_convs(shared / "weights" / "squeezenet1_1_ncnn"))
    ref = lpips.LPIPS(net="squeeze", pnet_rand=True, verbose=False).eval()
    for i in range(1, 8):  # the reference splits torchvision's `features` into slices, keeping the indices
        for index, module in getattr(ref.net, f"slice{i}").named_children():
            prefix = f"features.{index}."
            own = {k.removeprefix(prefix): v for k, v in sd.items() if k.startswith(prefix)}
            if own:
                module.load_state_dict(own)
            else:
                assert not list(module.parameters()), index  # ReLU and max-pool only
    fp32 = LPIPS()
    fp32.load_state_dict({**sd, **lpips_heads(default_heads_path())})
    shipped = load_lpips()
    for name, (a, b) in _pairs().items():
        with torch.no_grad():
            want = float(ref(_t(a) / 127.5 - 1, _t(b) / 127.5 - 1))
            assert float(fp32(_t(a), _t(b))) == pytest.approx(want, rel=1e-5, abs=1e-6), name
            assert float(shipped(_t(a), _t(b))) == pytest.approx(want, abs=2e-4), name
        assert want == pytest.approx(REFERENCE[name], abs=1e-6), name


def test_conversion_reproduces_the_shipped_file(shared: Path, tmp_path: Path) -> None:
    from impasto.train.lpips_convert import convert, default_heads_path
    from safetensors.torch import load_file

    convert(shared / "weights" / "squeezenet1_1_ncnn", default_heads_path(), tmp_path / "l.safetensors")
    made, shipped = load_file(str(tmp_path / "l.safetensors")), load_file(str(default_weights_path()))
    assert made.keys() == shipped.keys()
    assert all(torch.equal(made[k], shipped[k]) for k in made)
