"""The model store: models bundled in the package plus a user folder.

The user folder is the platform's data dir (platformdirs), overridable with IMPASTO_HOME. Bundled
models cannot be removed; a user model cannot shadow a bundled name."""

from __future__ import annotations

import builtins
import os
import re
from pathlib import Path

import torch
from torch import nn

from impasto.errors import InvalidArgument, ModelFileError, NotFound
from impasto.models.fileformat import build_network, load_state, read_info, save_model, sha256_file
from impasto.models.info import ModelInfo

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "data" / "models"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def user_home() -> Path:
    env = os.environ.get("IMPASTO_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("impasto", appauthor=False))


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidArgument(f"invalid model name {name!r}",
                              hint="use 1-64 lowercase letters, digits, '-', '_' or '.'")
    return name


class ModelStore:
    def __init__(self, user_dir: Path | None = None, bundled_dir: Path | None = BUNDLED_DIR):
        self.user_dir = Path(user_dir) if user_dir else user_home() / "models"
        self.bundled_dir = bundled_dir
        self._cache: dict[Path, tuple[float, ModelInfo]] = {}
        self.broken: dict[str, str] = {}  # file name -> why it could not be read

    def _infos(self) -> dict[str, ModelInfo]:
        found: dict[str, ModelInfo] = {}
        self.broken = {}
        for folder, bundled in ((self.bundled_dir, True), (self.user_dir, False)):
            if folder is None or not folder.is_dir():
                continue
            for path in sorted(folder.glob("*.safetensors")):
                try:
                    info = self._read(path, bundled)
                except ModelFileError as exc:
                    self.broken[path.name] = exc.message
                    continue
                found.setdefault(info.name, info)
        return found

    def _read(self, path: Path, bundled: bool) -> ModelInfo:
        mtime = path.stat().st_mtime
        hit = self._cache.get(path)
        if hit and hit[0] == mtime:
            return hit[1]
        info = read_info(path, bundled=bundled)
        info.sha256 = sha256_file(path)
        self._cache[path] = (mtime, info)
        return info

    def list(self, kind: str | None = None) -> list[ModelInfo]:
        infos = self._infos().values()
        return sorted((i for i in infos if kind in (None, "", i.kind)), key=lambda i: (i.kind, i.scale, i.name))

    def names(self, kind: str | None = None) -> builtins.list[str]:
        return [i.name for i in self.list(kind)]

    def get(self, name: str, kind: str | None = None) -> ModelInfo:
        info = self._infos().get(name)
        if info is None or (kind and info.kind != kind):
            what = {"style": "style", "sr": "super-resolution model"}.get(kind or "", "model")
            available = ", ".join(self.names(kind)) or "none"
            raise NotFound(f"unknown {what} {name!r}; available: {available}",
                           hint="`impasto models list` shows them; `impasto models import PATH` adds one")
        return info

    def load(self, name: str, device: torch.device | str = "cpu", kind: str | None = None) -> nn.Module:
        info = self.get(name, kind)
        assert info.path is not None
        net = build_network(info, load_state(info.path))
        return net.to(device).eval()

    def check_can_save(self, name: str, *, overwrite: bool = False) -> None:
        """Raise if `name` is invalid, bundled, or taken (without `overwrite`); training calls this up front."""
        check_name(name)
        existing = self._infos().get(name)
        if existing is not None and (existing.bundled or not overwrite):
            hint = "choose another --name" + ("" if existing.bundled else ", pass --overwrite, or remove it first")
            raise InvalidArgument(f"a {'bundled ' if existing.bundled else ''}model named {name!r} already exists",
                                  hint=hint)

    def save(self, name: str, state: dict[str, torch.Tensor] | nn.Module, info: ModelInfo, *,
             overwrite: bool = False) -> ModelInfo:
        self.check_can_save(name, overwrite=overwrite)
        if isinstance(state, nn.Module):
            state = {k: v for k, v in state.state_dict().items() if not k.endswith("num_batches_tracked")}
        info.name = name
        path = save_model(self.user_dir / f"{name}.safetensors", state, info)
        return self._read(path, False)

    def import_path(self, path: Path, name: str | None = None) -> ModelInfo:
        from impasto.models.convert import convert, detect

        path = Path(path)
        name = check_name(name or re.sub(r"[^a-z0-9_.-]+", "-", path.stem.lower()).strip("-.") or "model")
        if detect(path) == "impasto":
            info = read_info(path)
            state = load_state(path)
            build_network(info, state)  # the weights must fit their architecture
            return self.save(name, state, info)
        state, info = convert(path, name)
        return self.save(name, state, info)

    def remove(self, name: str) -> None:
        info = self.get(name)
        if info.bundled:
            raise InvalidArgument(f"{name!r} is bundled with Impasto and cannot be removed")
        assert info.path is not None
        info.path.unlink()
        self._cache.pop(info.path, None)
