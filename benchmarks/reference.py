"""Plain reference implementations that the benchmarks measure ours against.

Written the obvious way on purpose, with nothing from `impasto` in the forward passes: eager fp32, whole
images, no tiling, no autocast, no compile. They load the same weights as ours, so any output difference
is ours to explain.

* `ReferenceTransformerNet`: the style network of Johnson, Alahi & Fei-Fei (2016) in the pytorch/examples
  `fast_neural_style` layout (reflection-padded convs, instance norm, nearest upsample + conv). Its module
  names give the pytorch/examples state-dict keys, which are also ours, so one state dict loads into both.
* `reference_gatys`: the Gatys, Ecker & Bethge (2016) loop on the offline VGG-19 (conv1_1..conv3_3, Caffe
  preprocessing) with the objective `impasto.train.gatys` uses by default: content MSE at relu3_3 plus 1e2 x the
  Gram MSE at relu1_2, relu2_2, relu3_3, Gram / (C H W); L-BFGS (lr 1, history 50) taking one function
  evaluation per step, the pixels clamped to 0..255 after each, so one iteration is one forward + backward
  in both implementations.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import resources

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# ---- feed-forward network ----


class RefConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv2d = nn.Conv2d(cin, cout, kernel, stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2d(self.pad(x))


class RefUpConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv2d = nn.Conv2d(cin, cout, kernel, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2d(self.pad(F.interpolate(x, scale_factor=2, mode="nearest")))


class RefResidual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1, self.in1 = RefConv(c, c, 3), nn.InstanceNorm2d(c, affine=True)
        self.conv2, self.in2 = RefConv(c, c, 3), nn.InstanceNorm2d(c, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.in2(self.conv2(F.relu(self.in1(self.conv1(x)))))


class ReferenceTransformerNet(nn.Module):
    """(B, 3, H, W) RGB 0-255 -> same; H and W multiples of 4 (the two stride-2 convs)."""

    def __init__(self, widths: tuple[int, int, int] = (32, 64, 128), res_blocks: int = 5):
        super().__init__()
        a, b, c = widths
        self.conv1, self.in1 = RefConv(3, a, 9), nn.InstanceNorm2d(a, affine=True)
        self.conv2, self.in2 = RefConv(a, b, 3, 2), nn.InstanceNorm2d(b, affine=True)
        self.conv3, self.in3 = RefConv(b, c, 3, 2), nn.InstanceNorm2d(c, affine=True)
        self.res = [f"res{i}" for i in range(1, res_blocks + 1)]
        for name in self.res:
            self.add_module(name, RefResidual(c))
        self.deconv1, self.in4 = RefUpConv(c, b, 3), nn.InstanceNorm2d(b, affine=True)
        self.deconv2, self.in5 = RefUpConv(b, a, 3), nn.InstanceNorm2d(a, affine=True)
        self.deconv3 = RefConv(a, 3, 9)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.in1(self.conv1(x)))
        y = F.relu(self.in2(self.conv2(y)))
        y = F.relu(self.in3(self.conv3(y)))
        for name in self.res:
            y = getattr(self, name)(y)
        y = F.relu(self.in4(self.deconv1(y)))
        y = F.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


def reference_net(state: dict[str, Tensor]) -> ReferenceTransformerNet:
    """Build the reference net for a pytorch/examples state dict (widths read from the tensor shapes)."""
    state = {k: v.float() for k, v in state.items() if "running_" not in k and "num_batches" not in k}
    widths = tuple(int(state[f"conv{i}.conv2d.weight"].shape[0]) for i in (1, 2, 3))
    blocks = len({k.split(".")[0] for k in state if k.startswith("res")})
    net = ReferenceTransformerNet(widths, blocks)  # type: ignore[arg-type]
    net.load_state_dict(state, strict=True)
    return net.eval()


# ---- Gatys ----

# The offline VGG-19 trunk as torchvision numbers it: conv1_1, relu, conv1_2, relu(=relu1_2, index 3), pool,
# conv2_1, relu, conv2_2, relu(=relu2_2, 8), pool, conv3_1, relu, conv3_2, relu, conv3_3, relu(=relu3_3, 15).
_VGG_TRUNK = [64, 64, "M", 128, 128, "M", 256, 256, 256]
_TAPS = {3: "relu1_2", 8: "relu2_2", 15: "relu3_3"}
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def reference_vgg(device: torch.device | str = "cpu") -> nn.Sequential:
    from safetensors.torch import load_file

    layers: list[nn.Module] = []
    cin = 3
    for v in _VGG_TRUNK:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU()]
            cin = int(v)
    trunk = nn.Sequential(*layers)
    path = resources.files("impasto") / "data" / "loss_nets" / "vgg19_partial.safetensors"
    sd = load_file(str(path))
    trunk.load_state_dict({k.removeprefix("features."): v for k, v in sd.items() if k.startswith("features.")
                           and int(k.split(".")[1]) < len(layers)})
    return trunk.to(device).eval().requires_grad_(False)


def _features(vgg: nn.Sequential, rgb255: Tensor) -> dict[str, Tensor]:
    mean = torch.tensor(_CAFFE_MEAN_BGR, device=rgb255.device).view(1, 3, 1, 1)
    x = rgb255.flip(1) - mean  # Caffe: BGR, 0-255, mean subtracted
    out = {}
    for i, layer in enumerate(vgg):
        x = layer(x)
        if i in _TAPS:
            out[_TAPS[i]] = x
    return out


def _gram(f: Tensor) -> Tensor:
    b, c, h, w = f.shape
    psi = f.reshape(b, c, h * w)
    return psi @ psi.transpose(1, 2) / (c * h * w)


def reference_gatys(
    content: Tensor,
    style: Tensor,
    iterations: int,
    *,
    init: str | Tensor = "content",
    style_weight: float = 1e2,
    content_weight: float = 1.0,
    vgg: nn.Sequential | None = None,
    on_iteration: Callable[[int, float], None] | None = None,
) -> tuple[Tensor, list[float], list[float]]:
    """Gatys by L-BFGS on the pixels. Returns (image, loss before each iteration, wall time of each iteration).
    `content`, `style`: (1, 3, H, W) RGB 0-255 on the device to run on."""
    vgg = vgg if vgg is not None else reference_vgg(content.device)
    style_layers = ("relu1_2", "relu2_2", "relu3_3")
    with torch.no_grad():
        target_grams = {k: _gram(v) for k, v in _features(vgg, style).items()}
        target_content = _features(vgg, content)["relu3_3"]
    if isinstance(init, Tensor):
        image = init.detach().clone()
    elif init == "noise":
        image = torch.rand(content.shape, generator=torch.Generator().manual_seed(0)).to(content.device) * 255
    else:
        image = content.detach().clone()
    image.requires_grad_(True)
    opt = torch.optim.LBFGS([image], lr=1.0, max_iter=1, history_size=50, tolerance_grad=0.0, tolerance_change=0.0)
    losses: list[float] = []

    def closure() -> Tensor:
        opt.zero_grad()
        feats = _features(vgg, image)
        loss = content_weight * F.mse_loss(feats["relu3_3"], target_content)
        for name in style_layers:
            loss = loss + style_weight * F.mse_loss(_gram(feats[name]), target_grams[name])
        loss.backward()
        losses.append(loss.item())
        return loss

    times: list[float] = []
    for i in range(iterations):
        start = time.perf_counter()
        opt.step(closure)  # type: ignore[arg-type]
        with torch.no_grad():
            image.clamp_(0, 255)
        if content.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        if on_iteration is not None:
            on_iteration(i, losses[-1])
    return image.detach(), losses, times
