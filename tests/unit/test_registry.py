"""The network contract: every family describes itself (NetSpec) and registers detect / hyperparameters / build /
load with the registry, and those agree with each other on small networks made here."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from impasto.errors import ModelFileError
from impasto.nets.blocks import Act, Add, ConvLayer, Layer, Norm, Push, relu, run_plan
from impasto.nets.registry import archs, find_arch, get_arch
from impasto.nets.spec import NetSpec, Network, spec_of
from torch import nn

# small hyperparameters per family (the real ones are wider; shapes are all the registry reads)
SMALL: dict[str, dict[str, Any]] = {
    "johnson": {"widths": [4, 6, 8], "res_blocks": 2},
    "engstrom": {"widths": [4, 6, 8], "res_blocks": 3},
    "johnson_sr": {"scale": 4, "channels": 6, "blocks": 2, "bicubic_skip": False},
    "srgan": {"scale": 2, "channels": 6, "blocks": 2},
}


def _state(net: nn.Module) -> dict[str, torch.Tensor]:
    """Random weights (BatchNorm variances positive) in place of the initialisation."""
    torch.manual_seed(0)
    out = {}
    for k, v in net.state_dict().items():
        if v.is_floating_point():
            v = torch.rand_like(v) + 0.5 if k.endswith("running_var") else torch.randn_like(v) * 0.3
        out[k] = v
    return out


def test_every_family_is_registered_once_with_a_small_example() -> None:
    names = [a.name for a in archs()]
    assert sorted(names) == sorted(SMALL) and len(set(names)) == len(names)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_family_round_trip_detect_hparams_build_load(name: str) -> None:
    arch = get_arch(name)
    net = arch.build(**SMALL[name]).eval()
    state = _state(net)
    # detect: exactly this family recognises its own keys
    assert [a.name for a in archs() if a.detect(set(state))] == [name]
    assert find_arch(state, "test") is arch
    # hyperparameters read back from shapes are the ones it was built with
    assert arch.hparams(state) == SMALL[name]
    loaded = arch.load(state, SMALL[name])
    assert type(loaded) is type(net) and not loaded.training
    spec = loaded.spec
    assert spec.kind == arch.kind and spec == spec_of(loaded)
    if spec.kind == "style":
        assert spec.plan is not None and spec.scale == 1 and spec.halo == 0
    else:
        assert spec.plan is None and spec.scale == SMALL[name]["scale"] and spec.halo > 0
    assert spec.channels == max(SMALL[name].get("widths", [SMALL[name].get("channels", 0)]))
    # the loaded net computes with the given weights (not a fresh initialisation)
    net.load_state_dict(state)
    x = torch.rand(1, 3, 12, 16) * 255
    with torch.inference_mode():
        assert torch.equal(loaded(x), net(x))
        assert loaded(x).shape == (1, 3, 12 * spec.scale, 16 * spec.scale)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_family_refuses_weights_that_do_not_fit(name: str) -> None:
    arch = get_arch(name)
    state = _state(arch.build(**SMALL[name]))
    key = next(k for k, v in state.items() if v.ndim == 4 and not k.startswith(("conv1.", "head.", "block1.")))
    bad = dict(state)
    bad[key] = torch.zeros(*state[key].shape[:-1], state[key].shape[-1] + 1)
    with pytest.raises(ModelFileError, match="do not match the architecture.*wrong shape"):
        arch.load(bad)
    missing = dict(state)
    del missing[key]
    with pytest.raises(ModelFileError, match="missing"):
        arch.load(missing)


def test_unknown_architecture_and_layout_are_model_file_errors() -> None:
    with pytest.raises(ModelFileError, match="unknown architecture 'resnet'"):
        get_arch("resnet", "m")
    with pytest.raises(ModelFileError, match="unknown network layout"):
        find_arch({"fc.weight": torch.zeros(2)}, "f.pth")


def test_netspec_refuses_an_inconsistent_description() -> None:
    with pytest.raises(ValueError):
        NetSpec(kind="style", scale=1, multiple=4, halo=0, channels=8)  # a style net needs its plan
    with pytest.raises(ValueError):
        NetSpec(kind="sr", scale=2, multiple=1, halo=0, channels=8)  # a local net needs its halo
    with pytest.raises(ValueError):
        NetSpec(kind="paint", scale=1, multiple=1, halo=1, channels=8)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not an impasto network"):
        spec_of(nn.Conv2d(3, 3, 1))


def test_run_plan_dispatches_typed_steps() -> None:
    torch.manual_seed(1)
    conv = ConvLayer(2, 2, 3)
    norm = nn.InstanceNorm2d(2, affine=True)
    plan = [Push(), Layer(conv), Norm(norm), Act(relu), Add()]
    x = torch.randn(1, 2, 7, 9)
    with torch.inference_mode():
        assert torch.allclose(run_plan(plan, x), x + torch.relu(norm(conv(x))))


class _TwoConvSR(Network):
    """A family made up here: nearest x2 and two 3x3 convs, described only through its spec."""

    arch = "two_conv"

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 5, 3, padding=1, padding_mode="reflect")
        self.b = nn.Conv2d(5, 3, 3, padding=1, padding_mode="reflect")

    @property
    def spec(self) -> NetSpec:
        return NetSpec(kind="sr", scale=2, multiple=1, halo=3, channels=5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))))


def test_a_new_family_runs_through_the_tiler_by_its_spec_alone() -> None:
    from impasto.engine.tiling import RunConfig, run_network

    torch.manual_seed(2)
    net = _TwoConvSR().eval()
    x = torch.rand(1, 3, 23, 30) * 255
    whole = run_network(net, x, RunConfig())
    tiled = run_network(net, x, RunConfig(tile=8, force_tiles=True))
    assert whole.shape == (1, 3, 46, 60)
    assert torch.allclose(whole, tiled, atol=1e-3)
