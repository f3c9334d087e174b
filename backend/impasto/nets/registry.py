"""The architecture registry: every network family registers how to recognise, size, build and load itself.

Each family module calls `register(Arch(...))` at import; `archs()` imports every module of `impasto.nets` once,
so adding a family touches only its own file (and its tests). The converters (`models.convert`) and the file
reader (`models.fileformat`) loop over the registry instead of knowing the families.

Loading is hardened in one place (`Arch.load`): the state dict is checked (`limits.check_state`), the family
reads its hyperparameters back from tensor shapes within bounds (spandrel style), a skeleton of the network is
built on the `meta` device (no memory) and its expected shapes are compared with the file's, and only then
are the file's tensors assigned to it, so nothing is allocated for a file that does not fit."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from impasto.errors import ModelFileError
from impasto.nets.limits import check_state, echo, short
from impasto.nets.spec import Kind, Network

State = Mapping[str, torch.Tensor]


def _keep(state: State) -> dict[str, torch.Tensor]:
    return dict(state)


@dataclass(frozen=True)
class Arch:
    """One network family. `read_hparams` returns the keyword arguments of `build` (JSON-able: they are also
    the descriptor's `params` for style nets) and raises ModelFileError for shapes out of bounds."""

    name: str  # `ModelInfo.arch` in model files
    kind: Kind
    detect: Callable[[Collection[str]], bool]  # state-dict keys -> is this layout ours?
    read_hparams: Callable[[State], dict[str, Any]]
    build: Callable[..., Network]  # build(**hparams)
    what: str  # "a pytorch/examples style network": for messages and a converted file's `source`
    format: str = ""  # `models.convert.detect` answer for a foreign file of this layout (default: `name`)
    clean: Callable[[State], dict[str, torch.Tensor]] = _keep  # drop keys the layout carries but never uses
    # hyperparameters that shapes cannot tell (read from the descriptor's `params`), with their types
    options: Mapping[str, type] = field(default_factory=dict)

    def hparams(self, state: State) -> dict[str, Any]:
        """Hyperparameters read back from the shapes of a checked, cleaned state dict."""
        return self.read_hparams(self.clean(check_state(state, self.what)))

    def load(self, state: State, stored: Mapping[str, Any] | None = None) -> Network:
        """A network in eval mode holding `state` (as float32). `stored`: the descriptor's params, for
        `options` only. Any mismatch is a ModelFileError raised before the network takes memory."""
        state = self.clean(check_state(state, self.what))
        params = self.read_hparams(state)
        for key, typ in self.options.items():
            if stored and key in stored:
                if not isinstance(stored[key], typ):
                    raise ModelFileError(f"{self.what}: parameter {key} is {echo(stored[key])}, not a {typ.__name__}")
                params[key] = stored[key]
        with torch.device("meta"):
            net = self.build(**params)
        _check_fit(net, state, self.what)
        net.load_state_dict({k: v.float().contiguous() for k, v in state.items()}, strict=True, assign=True)
        left = [n for n, t in (*net.named_parameters(), *net.named_buffers()) if t.is_meta]
        if left:  # pragma: no cover - _check_fit guarantees every tensor was given
            raise ModelFileError(f"{self.what}: no weights for {', '.join(left[:3])}")
        return net.eval()


def _check_fit(skeleton: Network, state: State, what: str) -> None:
    """The file's keys and shapes must be exactly those of the built network (integer counters aside)."""
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items() if v.is_floating_point()}
    missing = [echo(k) for k in sorted(expected.keys() - state.keys())]
    unexpected = [echo(k) for k in sorted(state.keys() - expected.keys())]
    wrong = [f"{echo(k)} {list(state[k].shape)} (expected {list(expected[k])})"
             for k in sorted(expected.keys() & state.keys()) if tuple(state[k].shape) != expected[k]]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            problems.append(f"{label}: " + ", ".join(items[:3]) + more)
    if problems:
        raise ModelFileError(f"{what}: the weights do not match the architecture ({'; '.join(problems)})",
                             hint="the file is damaged or was saved from a different network")


_REGISTRY: dict[str, Arch] = {}
_discovered = False


def register(arch: Arch) -> Arch:
    """Add a family (called by its module at import)."""
    if arch.name in _REGISTRY and _REGISTRY[arch.name] is not arch:
        raise ValueError(f"architecture {arch.name!r} registered twice")
    _REGISTRY[arch.name] = arch
    return arch


def archs() -> list[Arch]:
    """Every registered family. The first call imports each module of this package, so each family that
    lives here registers itself without a list to keep in step."""
    global _discovered
    if not _discovered:
        import impasto.nets as package

        for mod in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{mod.name}")
        _discovered = True
    return list(_REGISTRY.values())


def get_arch(name: str, source: str = "") -> Arch:
    """The family a model file's descriptor names (`source`: the model, for the message)."""
    for arch in archs():
        if arch.name == name:
            return arch
    known = ", ".join(a.name for a in archs())
    prefix = f"{short(source)}: " if source else ""
    raise ModelFileError(f"{prefix}unknown architecture {echo(name)} (this version knows {known})",
                         hint="update Impasto, or re-import the original weights")


def find_arch(state: State, source: str) -> Arch:
    """The one family whose `detect` recognises the keys of `state` (read from `source`)."""
    keys = {k for k in state if isinstance(k, str)}
    found = [a for a in archs() if a.detect(keys)]
    if len(found) != 1:
        first = ", ".join(echo(k) for k in list(state)[:4])
        why = "unknown network layout" if not found else "ambiguous layout (" + ", ".join(a.name for a in found) + ")"
        raise ModelFileError(f"{short(source)}: {why} (first keys: {first})",
                             hint="supported: " + ", ".join(a.what for a in archs()))
    return found[0]
