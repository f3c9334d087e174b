"""Networks load the formats people have, and converted nets agree with independent numpy forwards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from impasto.nets.engstrom import convert_ml5, engstrom_from_state, read_ml5_variables
from impasto.nets.johnson import johnson_from_state
from impasto.nets.sr import build_johnson_sr
from impasto.nets.srgan import srgan_from_state


def _load(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("width", ["nc8", "nc16"])
def test_reduced_pytorch_examples_nets_load_and_stylize(shared: Path, width: str) -> None:
    folder = shared / f"weights/style_nets/pytorch_examples_reduced/saved_models_{width}"
    files = sorted(folder.glob("*.model"))
    assert len(files) == 4
    x = torch.rand(1, 3, 40, 52) * 255
    for f in files:
        net = johnson_from_state(_load(f))
        assert net.widths[0] == {"nc8": 8, "nc16": 16}[width]
        with torch.inference_mode():
            y = net(x)
        assert y.shape == x.shape
        assert float((y - x).abs().mean()) > 10  # it changes the image, as a style should


def test_old_checkpoints_with_instance_norm_running_stats_load(shared: Path) -> None:
    folder = shared / "weights/style_nets/pytorch_examples_reduced/saved_models_nc8"
    state = _load(folder / "candy_nc8_b1_e2_1e05_1e10.model")
    old = dict(state)
    for k in [k for k in state if k.endswith(".weight") and (k.startswith("in") or ".in" in k)]:
        base = k[: -len(".weight")]
        old[base + ".running_mean"] = torch.zeros_like(state[k])
        old[base + ".running_var"] = torch.ones_like(state[k])
    a, b = johnson_from_state(state), johnson_from_state(old)
    x = torch.rand(1, 3, 24, 24) * 255
    assert torch.equal(a(x), b(x))


# ---- independent numpy forward passes ----


def _conv(x: np.ndarray, w: np.ndarray, stride: int, pads: tuple[int, int, int, int]) -> np.ndarray:
    """x (C, H, W), w HWIO (TF layout), zero pads (top, bottom, left, right)."""
    x = np.pad(x, ((0, 0), (pads[0], pads[1]), (pads[2], pads[3])))
    kh, kw, _, cout = w.shape
    h = (x.shape[1] - kh) // stride + 1
    wd = (x.shape[2] - kw) // stride + 1
    out = np.zeros((cout, h, wd))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i : i + stride * h : stride, j : j + stride * wd : stride]
            out += np.einsum("chw,co->ohw", patch, w[i, j])
    return out


def _same(n: int, k: int, s: int) -> tuple[int, int]:
    total = max((-(-n // s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _tf_conv(x: np.ndarray, w: np.ndarray, s: int) -> np.ndarray:
    ph, pw = _same(x.shape[1], w.shape[0], s), _same(x.shape[2], w.shape[1], s)
    return _conv(x, w, s, (*ph, *pw))


def _tf_deconv(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """TF conv2d_transpose, SAME, stride 2; w [kh, kw, out, in]: out[2i + a, 2j + b] += x[i, j] w[a, b]."""
    c, h, wd = x.shape
    kh, kw, cout, _ = w.shape
    out = np.zeros((cout, 2 * h + kh, 2 * wd + kw))
    for a in range(kh):
        for b in range(kw):
            out[:, a : a + 2 * h : 2, b : b + 2 * wd : 2] += np.einsum("chw,oc->ohw", x, w[a, b])
    return out[:, : 2 * h, : 2 * wd]


def _inorm(x: np.ndarray, shift: np.ndarray, scale: np.ndarray) -> np.ndarray:
    mu = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    return scale[:, None, None] * (x - mu) / np.sqrt(var + 1e-3) + shift[:, None, None]


def _engstrom_numpy(v: list[np.ndarray], img: np.ndarray) -> np.ndarray:
    relu = lambda t: np.maximum(t, 0)  # noqa: E731
    x = img.astype(np.float64)
    k = 0

    def layer(x: np.ndarray, stride: int, act: bool, deconv: bool = False) -> np.ndarray:
        nonlocal k
        w, shift, scale = (a.astype(np.float64) for a in v[k : k + 3])
        k += 3
        y = _tf_deconv(x, w) if deconv else _tf_conv(x, w, stride)
        y = _inorm(y, shift, scale)
        return relu(y) if act else y

    x = layer(x, 1, True)
    x = layer(x, 2, True)
    x = layer(x, 2, True)
    for _ in range(5):
        x = x + layer(layer(x, 1, True), 1, False)
    x = layer(x, 2, True, deconv=True)
    x = layer(x, 2, True, deconv=True)
    x = layer(x, 1, False)
    return np.tanh(x) * 150 + 127.5


def test_ml5_conversion_matches_independent_numpy_forward(shared: Path) -> None:
    folder = shared / "weights/style_nets/ml5_engstrom/wave"
    variables = read_ml5_variables(folder)
    assert len(variables) == 48
    rng = np.random.default_rng(1)
    img = rng.random((3, 16, 20)) * 255
    ref = _engstrom_numpy(variables, img)
    net = engstrom_from_state(convert_ml5(folder)).double()
    with torch.inference_mode():
        got = net(torch.from_numpy(img)[None])[0].numpy()
    assert got.shape == ref.shape == (3, 16, 20)
    # the bar: max error <= 1e-3 of the output range (300)
    assert np.abs(got - ref).max() <= 1e-3 * 300


def _srgan_numpy(sd: dict[str, np.ndarray], img: np.ndarray, scale: int) -> np.ndarray:
    def conv(x: np.ndarray, name: str) -> np.ndarray:
        w = sd[name + ".weight"].transpose(2, 3, 1, 0)  # OIHW -> HWIO
        p = w.shape[0] // 2
        return _conv(x, w, 1, (p, p, p, p)) + sd[name + ".bias"][:, None, None]

    def prelu(x: np.ndarray, name: str) -> np.ndarray:
        return np.where(x >= 0, x, sd[name + ".weight"][0] * x)

    def bn(x: np.ndarray, name: str) -> np.ndarray:
        g, b, m, v = (sd[f"{name}.{k}"][:, None, None] for k in ("weight", "bias", "running_mean", "running_var"))
        return (x - m) / np.sqrt(v + 1e-5) * g + b

    x = img / 255.0
    b1 = prelu(conv(x, "block1.0"), "block1.1")
    y = b1
    for i in range(2, 7):
        n = f"block{i}"
        y = y + bn(conv(prelu(bn(conv(y, n + ".conv1"), n + ".bn1"), n + ".prelu"), n + ".conv2"), n + ".bn2")
    y = prelu(conv(y, "block7.0"), "block7.1")
    y = b1 + y
    ups = int(np.log2(scale))
    for u in range(ups):
        y = conv(y, f"block8.{u}.conv")
        c, h, w = y.shape
        y = y.reshape(c // 4, 2, 2, h, w).transpose(0, 3, 1, 4, 2).reshape(c // 4, h * 2, w * 2)  # pixel shuffle
        y = prelu(y, f"block8.{u}.prelu")
    y = conv(y, f"block8.{ups}")
    return (np.tanh(y) + 1) / 2 * 255


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_srgan_conversion_matches_independent_numpy_forward(shared: Path, scale: int) -> None:
    state = _load(shared / f"weights/sr/srgan/netG_epoch_{scale}_100.pth")
    sd = {k: v.double().numpy() for k, v in state.items()}
    img = np.random.default_rng(2).random((3, 6, 7)) * 255
    ref = _srgan_numpy(sd, img, scale)
    net = srgan_from_state(state).double()
    with torch.inference_mode():
        got = net(torch.from_numpy(img)[None])[0].numpy()
    assert got.shape == (3, 6 * scale, 7 * scale)
    assert np.abs(got - ref).max() <= 1e-3 * 255


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_paper_sr_nets_have_the_papers_shape(scale: int) -> None:
    net = build_johnson_sr(scale=scale).eval()
    assert len(net.up) == {2: 1, 4: 2, 8: 3}[scale] and len(net.body) == 4
    assert net.head.kernel_size == (9, 9) and net.tail.out_channels == 3
    with torch.inference_mode():
        assert net(torch.rand(1, 3, 9, 11) * 255).shape == (1, 3, 9 * scale, 11 * scale)
