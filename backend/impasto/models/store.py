"""The model store: models bundled in the package plus a user folder.

The user folder is the platform's data dir (platformdirs), overridable with IMPASTO_HOME. Bundled
models cannot be removed; a user model cannot shadow a bundled name. Every descriptor is checked
(`describe`: header size, then types and ranges) before it is listed or imported; a file that fails
is skipped and reported in `broken`, so one bad file never breaks the listing for everyone."""

from __future__ import annotations

import builtins
import os
import re
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from impasto.errors import InvalidArgument, ModelFileError, NotFound
from impasto.models.fileformat import build_network, load_state, read_info, save_model, sha256_file
from impasto.models.info import HEADER_LIMIT, NAME_RULE, ModelInfo, strip_paths, validate

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "data" / "models"
# Leading bytes of what `models import` can take besides .safetensors and ml5 folders: torch.save's zip
# container, or a pickle (protocol 2+) as older torch versions and SRGAN's checkpoints wrote.
_WEIGHT_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def user_home() -> Path:
    env = os.environ.get("IMPASTO_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("impasto", appauthor=False))


def check_name(name: str) -> str:
    if not NAME_RULE.match(name):
        raise InvalidArgument(f"invalid model name {name!r}",
                              hint="use 1-64 lowercase letters, digits, '-', '_' or '.'")
    return name


def describe(path: Path, *, bundled: bool = False) -> ModelInfo:
    """The checked descriptor of an Impasto model file: ModelFileError for anything malformed or oversized."""
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) == 8 and (size := int.from_bytes(head, "little")) > HEADER_LIMIT:
        # refused before safetensors reads it: the header holds the metadata, thumbnails included
        raise ModelFileError(f"{path.name}: its metadata header is {size:,} bytes, over the limit of "
                             f"{HEADER_LIMIT:,}", hint="re-import, re-download or re-train the model")
    try:
        info = read_info(path, bundled=bundled)
    except (AttributeError, TypeError, ValueError, KeyError, RecursionError, OverflowError) as exc:
        # metadata that is valid JSON of the wrong shape (a list, a string, nesting 100,000 deep)
        raise ModelFileError(f"{path.name}: malformed metadata ({type(exc).__name__})") from None
    return validate(info, path.name)


def check_weights_file(path: Path) -> None:
    """Refuse, up front and clearly, a file `models import` cannot take (a text file, an image, an archive)."""
    if path.is_dir() or not path.exists() or path.suffix == ".safetensors":
        return  # folders, missing files and our own format get their own messages
    with open(path, "rb") as f:
        head = f.read(4)
    if not head.startswith(_WEIGHT_MAGIC):
        raise ModelFileError(f"{path.name}: not a model file (neither safetensors nor PyTorch weights)",
                             hint="import a .safetensors model, a PyTorch state dict (.pth) or an ml5 style folder")


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
                except OSError as exc:  # unreadable, or removed while we listed
                    self.broken[path.name] = f"{path.name}: cannot read ({exc.strerror or exc})"
                    continue
                found.setdefault(info.name, info)
        return found

    def _read(self, path: Path, bundled: bool) -> ModelInfo:
        mtime = path.stat().st_mtime
        hit = self._cache.get(path)
        if hit and hit[0] == mtime:
            return hit[1]
        info = describe(path, bundled=bundled)
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
        """Raise if `name` is invalid, bundled, or taken (without `overwrite`); training calls this up front.
        The hint's flags exist on every command that saves (train, models import, models pull)."""
        check_name(name)
        existing = self._infos().get(name)
        if existing is not None and existing.bundled:
            raise InvalidArgument(f"a bundled model named {name!r} already exists", hint="choose another --name")
        if existing is not None and not overwrite:
            raise InvalidArgument(f"a model named {name!r} already exists",
                                  hint=f"pass --overwrite to replace it, or `impasto models remove {name}` first")

    def save(self, name: str, state: dict[str, torch.Tensor] | nn.Module, info: ModelInfo, *,
             overwrite: bool = False) -> ModelInfo:
        self.check_can_save(name, overwrite=overwrite)
        if isinstance(state, nn.Module):
            state = {k: v for k, v in state.state_dict().items() if not k.endswith("num_batches_tracked")}
        # No absolute path leaves this machine in a model file (a shared model would publish the folder layout).
        info = replace(info, name=name, source=strip_paths(info.source), training=strip_paths(info.training))
        validate(info, f"{name}.safetensors")  # what we write, we can read back
        path = save_model(self.user_dir / f"{name}.safetensors", state, info)
        return self._read(path, False)

    def import_path(self, path: Path, name: str | None = None, *, overwrite: bool = False) -> ModelInfo:
        from impasto.models.convert import convert, detect

        path = Path(path)
        name = check_name(name or re.sub(r"[^a-z0-9_.-]+", "-", path.stem.lower()).strip("-.") or "model")
        check_weights_file(path)
        self.check_can_save(name, overwrite=overwrite)  # before any conversion work
        if detect(path) == "impasto":
            info = describe(path)  # a descriptor we would refuse to list is refused here, before the weights
            state = load_state(path)
            build_network(info, state)  # the weights must fit their architecture
            return self.save(name, state, info, overwrite=overwrite)
        state, info = convert(path, name)
        return self.save(name, state, info, overwrite=overwrite)

    def remove(self, name: str) -> None:
        info = self.get(name)
        if info.bundled:
            raise InvalidArgument(f"{name!r} is bundled with Impasto and cannot be removed")
        assert info.path is not None
        info.path.unlink()
        self._cache.pop(info.path, None)
