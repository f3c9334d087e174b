"""Perceptual losses (Johnson et al. 2016 §3): the formulas, checked by hand."""

from __future__ import annotations

import pytest
import torch
from impasto.nets.vgg import VGG16, LossNet
from impasto.train.losses import LossWeights, PerceptualLoss, feature_loss, gram, pixel_loss, style_loss, tv_loss


def test_gram_normalised_by_chw() -> None:
    f = torch.randn(2, 3, 4, 5)
    g = gram(f)
    psi = f[1].reshape(3, 20)
    torch.testing.assert_close(g[1], psi @ psi.T / 60)
    assert g.shape == (2, 3, 3)
    torch.testing.assert_close(g, g.transpose(1, 2))


def test_feature_and_pixel_losses_are_means() -> None:
    a, b = torch.zeros(1, 2, 3, 3), torch.full((1, 2, 3, 3), 2.0)
    assert feature_loss(a, b).item() == pytest.approx(4.0)
    assert pixel_loss(a, b).item() == pytest.approx(4.0)


def test_style_loss_broadcasts_one_style_over_a_batch() -> None:
    g = gram(torch.randn(3, 4, 6, 6))
    t = g[:1]
    s = style_loss([g], [t])
    assert s.item() == pytest.approx(((g - t) ** 2).mean().item(), rel=1e-6)
    assert style_loss([t], [t]).item() == 0


def test_tv_is_zero_on_flat_and_grows_with_noise() -> None:
    assert tv_loss(torch.full((1, 3, 8, 8), 100.0)).item() == 0
    x = torch.zeros(1, 1, 2, 2)
    x[0, 0, 0, 0] = 1.0  # two vertical and two horizontal neighbour pairs, one differing in each
    assert tv_loss(x).item() == pytest.approx(0.5 + 0.5)


def test_perceptual_loss_terms_and_weights() -> None:
    torch.manual_seed(0)
    net = LossNet(VGG16, ["relu2_2"])  # random weights are enough to check the bookkeeping
    style = torch.rand(1, 3, 16, 16) * 255
    content = torch.rand(2, 3, 16, 16) * 255
    crit = PerceptualLoss(net, "relu2_2", ("relu1_2", "relu2_2"), LossWeights(content=2, style=3, tv=0.5))
    crit.set_style(style)
    total, terms = crit(content, content)
    assert terms["content"] == 0
    assert terms["style"] > 0 and terms["tv"] > 0
    assert total.item() == pytest.approx(3 * terms["style"] + 0.5 * terms["tv"], rel=1e-5)
    # The content-only configuration never needs a style.
    only_c = PerceptualLoss(net, "relu2_2", (), LossWeights(content=1, style=0, tv=0))
    _, t2 = only_c(style.expand(2, -1, -1, -1), content)
    assert set(t2) == {"content", "total"}


def test_gram_gradient_matches_autograd_of_the_plain_product() -> None:
    # gram() has its own backward (one matrix product instead of two); it must equal autograd's of ψψᵀ/(CHW)
    from impasto.train.losses import _Gram

    psi = torch.randn(2, 5, 30, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: _Gram.apply(t, 150.0), (psi,))
    f = torch.randn(2, 5, 6, 5, requires_grad=True)
    weights = torch.randn(2, 5, 5)
    (gram(f) * weights).sum().backward()
    ours = f.grad
    f2 = f.detach().clone().requires_grad_(True)
    p = f2.reshape(2, 5, 30)
    ((p @ p.transpose(1, 2) / 150) * weights).sum().backward()
    torch.testing.assert_close(ours, f2.grad)


def test_gram_of_bf16_features_is_fp32_in_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    # under autocast the features are bf16; the Gram and its gradient are still computed in fp32, a few columns
    # at a time (slices of 7 here, so the last one is partial)
    import impasto.train.losses as losses

    monkeypatch.setattr(losses, "_CHUNK", 7)
    f = torch.randn(2, 6, 5, 9).bfloat16().requires_grad_(True)
    weights = torch.randn(2, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        g = gram(f)
    assert g.dtype == torch.float32
    (g * weights).sum().backward()
    wide = f.detach().float().requires_grad_(True)
    p = wide.reshape(2, 6, 45)
    ref = p @ p.transpose(1, 2) / 270
    (ref * weights).sum().backward()
    torch.testing.assert_close(g, ref)
    assert f.grad is not None and f.grad.dtype == torch.bfloat16
    torch.testing.assert_close(f.grad.float(), wide.grad, atol=2e-3, rtol=1e-2)  # rounded to bf16 at the end


def test_grid_loss_sees_a_pattern_fixed_to_the_4_pixel_period() -> None:
    from impasto.train.losses import grid_loss

    torch.manual_seed(0)
    noise = 100 + torch.rand(2, 3, 64, 64) * 40  # texture at no fixed phase: its phase means agree
    pattern = torch.zeros(4, 4)
    pattern[0, 0], pattern[2, 1] = 16.0, -16.0  # mean 0: the variance of the 16 phase values is 32
    base = grid_loss(noise).item()
    assert base < 2
    with_grid = grid_loss(noise + pattern.repeat(16, 16)).item()
    assert with_grid > base + 16  # most of the pattern's variance survives the detail filter
    # the same pattern at period 3 is not the network's period: far less of it is seen
    three = torch.zeros(3, 3)
    three[0, 0], three[2, 1] = 16.0, -16.0
    assert grid_loss(noise[..., :63, :63] + three.repeat(21, 21)).item() < base + 8
    # and it trains: the gradient points the pattern away
    x = (noise + pattern.repeat(16, 16)).requires_grad_()
    grid_loss(x).backward()
    assert x.grad is not None and float((x.grad[0, 0, 0::4, 0::4]).mean()) > 0


def test_perceptual_loss_adds_the_grid_term_with_its_weight() -> None:
    torch.manual_seed(0)
    net = LossNet(VGG16, ["relu2_2"])
    content = torch.rand(1, 3, 16, 16) * 255
    off = PerceptualLoss(net, "relu2_2", (), LossWeights(content=1, style=0, tv=0))
    on = PerceptualLoss(net, "relu2_2", (), LossWeights(content=1, style=0, tv=0, grid=100.0))
    out = content + torch.rand(1, 3, 16, 16) * 20
    t_off, terms_off = off(out, content)
    t_on, terms_on = on(out, content)
    assert "grid" not in terms_off and terms_on["grid"] > 0
    assert t_on.item() == pytest.approx(t_off.item() + 100.0 * terms_on["grid"], rel=1e-5)
