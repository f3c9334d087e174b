"""`impasto models pull NAME`: download a well-known public model (manifest.json), verify its sha256,
then import it. For users with a network; everything else in Impasto works offline."""

from __future__ import annotations

import hashlib
import json
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from impasto.errors import InvalidArgument, NotFound, Unavailable
from impasto.models.info import ModelInfo
from impasto.models.store import ModelStore

MANIFEST = Path(__file__).with_name("manifest.json")


def manifest() -> dict[str, dict[str, str]]:
    return {k: v for k, v in json.loads(MANIFEST.read_text()).items() if not k.startswith("_")}


def download(url: str, dest: Path, sha256: str, *, timeout: float = 10.0,
             progress: Callable[[int, int], None] | None = None) -> Path:
    """Stream `url` to `dest`; fails fast and clearly when offline; the checksum must match."""
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as f:
            total = int(resp.headers.get("Content-Length") or 0)
            done = 0
            while block := resp.read(1 << 16):
                f.write(block)
                h.update(block)
                done += len(block)
                if progress:
                    progress(done, total)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        dest.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise Unavailable(f"cannot download {url}: {reason}",
                          hint="check the network; offline, import a local file with `impasto models import PATH`"
                          ) from None
    if h.hexdigest() != sha256:
        dest.unlink(missing_ok=True)
        raise InvalidArgument(f"checksum mismatch for {url}: got {h.hexdigest()}, expected {sha256}",
                              hint="the file changed upstream or the download was corrupted; nothing was installed")
    return dest


def pull(store: ModelStore, name: str, *, progress: Callable[[int, int], None] | None = None,
         entries: dict[str, dict[str, str]] | None = None, overwrite: bool = False) -> ModelInfo:
    entries = entries if entries is not None else manifest()
    if name not in entries:
        raise NotFound(f"no well-known model {name!r}; available: {', '.join(sorted(entries))}")
    entry = entries[name]
    with tempfile.TemporaryDirectory() as tmp:
        suffix = Path(entry["url"]).suffix or ".pth"
        path = download(entry["url"], Path(tmp) / f"{name}{suffix}", entry["sha256"], progress=progress)
        info = store.import_path(path, name, overwrite=overwrite)
    return info
