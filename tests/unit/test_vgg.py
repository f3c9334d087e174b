"""The shipped VGG-19 file against an independent numpy reading of the original tfjs shards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from impasto.errors import NotFound
from impasto.nets.vgg import VGG16, LossNet, load_loss_net

DATA = Path(__file__).parents[2].parent / "shared" / "data"
TFJS = DATA / "weights" / "vgg19_partial_tfjs"
SAMPLES = Path(__file__).parents[2] / "backend" / "impasto" / "data" / "samples"  # ships with the package
needs_data = pytest.mark.shared_data("weights/vgg19_partial_tfjs")


def _numpy_weights(round_fp16: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    # Read model.json ourselves (not through the converter): group i = conv i, kernel then bias, float32 LE.
    manifest = json.loads((TFJS / "model.json").read_text())["weightsManifest"][:8]
    convs = []
    for group in manifest:
        raw = np.concatenate([np.fromfile(TFJS / p, dtype="<f4") for p in group["paths"]])
        kshape = group["weights"][0]["shape"]
        n = int(np.prod(kshape))
        k, b = raw[:n].reshape(kshape), raw[n:]
        if round_fp16:
            k, b = k.astype(np.float16).astype(np.float32), b.astype(np.float16).astype(np.float32)
        convs.append((k.astype(np.float64), b.astype(np.float64)))
    return convs


def _conv3x3(x: np.ndarray, k: np.ndarray, b: np.ndarray) -> np.ndarray:
    # x (H, W, Cin), k (3, 3, Cin, Cout) HWIO, zero padding 1: a sum of nine shifted matrix products.
    h, w, _ = x.shape
    p = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((h, w, k.shape[3])) + b
    for dy in range(3):
        for dx in range(3):
            out += p[dy : dy + h, dx : dx + w, :] @ k[dy, dx]
    return out


def _numpy_vgg(rgb: np.ndarray, convs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    x = rgb[:, :, ::-1] - np.array([103.939, 116.779, 123.68])  # Caffe: BGR, 0-255, mean subtracted
    taps: dict[str, np.ndarray] = {}
    plan = [("1_1", False), ("1_2", True), ("2_1", False), ("2_2", True),
            ("3_1", False), ("3_2", False), ("3_3", False), ("3_4", False)]  # (name, pool after)
    for (name, pool), (k, b) in zip(plan, convs, strict=True):
        x = np.maximum(_conv3x3(x, k, b), 0)
        taps[f"relu{name}"] = x
        if pool:
            h, w, c = x.shape
            x = x.reshape(h // 2, 2, w // 2, 2, c).max(axis=(1, 3))
    return taps


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    from PIL import Image

    im = Image.open(SAMPLES / "chelsea.png").convert("RGB").resize((24, 20), Image.Resampling.BICUBIC)
    return np.asarray(im, dtype=np.float64)


@needs_data
@pytest.mark.parametrize("round_fp16", [True, False])
def test_feature_maps_match_numpy(image: np.ndarray, round_fp16: bool) -> None:
    taps = ["relu1_2", "relu2_2", "relu3_3", "relu3_4"]
    net = load_loss_net("vgg19-partial", taps).double()
    x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None]
    ours = net(x, taps)
    ref = _numpy_vgg(image, _numpy_weights(round_fp16))
    for t in taps:
        a = ours[t][0].permute(1, 2, 0).numpy()
        scale = np.abs(ref[t]).max()
        assert a.shape == ref[t].shape
        # The file stores fp16: exact against fp16-rounded weights, within fp16 precision against the originals.
        tol = 1e-6 if round_fp16 else 5e-3  # 1e-6: the mean is a float32 buffer
        assert np.abs(a - ref[t]).max() <= tol * scale, t


def test_taps_and_truncation() -> None:
    net = LossNet(VGG16, ["relu2_2"])
    assert net.names[-1] == "relu2_2"
    out = net(torch.rand(1, 3, 16, 16) * 255, ["relu1_2", "relu2_2"])
    assert out["relu1_2"].shape == (1, 64, 16, 16) and out["relu2_2"].shape == (1, 128, 8, 8)
    with pytest.raises(NotFound):
        LossNet(VGG16, ["relu6_1"])


def test_vgg19_partial_has_no_relu4() -> None:
    with pytest.raises(NotFound, match="relu4_3"):
        load_loss_net("vgg19-partial", ["relu4_3"])


def test_vgg16_from_torchvision_state_dict(tmp_path: Path) -> None:
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    features = make_layers(cfgs["D"])  # torchvision's own VGG-16 trunk (skips the 120M-parameter classifier)
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # a full checkpoint's head must be ignored
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    net = load_loss_net("vgg16", ["relu4_3"], vgg16_weights=path)
    x = torch.rand(1, 3, 32, 32) * 255
    pre = (x / 255 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = features[:23](pre)  # torchvision index 22 is relu4_3
        got = net(x, ["relu4_3"])["relu4_3"]
    torch.testing.assert_close(got, expected)


def test_vgg16_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(NotFound) as err:
        load_loss_net("vgg16", vgg16_weights=tmp_path / "nope.pth")
    assert "--vgg16-weights" in (err.value.hint or "")
