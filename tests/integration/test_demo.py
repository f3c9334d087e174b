"""`impasto demo` end to end: a real backend on loopback, every bundled model, no network."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from impasto.cli import main
from PIL import Image


@pytest.mark.slow
def test_demo_writes_page_and_contact_sheet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            impasto_home: Path) -> None:
    real_connect = socket.socket.connect
    remote: list[object] = []

    def guarded(self: socket.socket, address: object) -> object:  # only loopback may be reached
        host = address[0] if isinstance(address, tuple) else str(address)
        if isinstance(host, str) and not (host.startswith("127.") or host in ("::1", "localhost")) \
                and self.family in (socket.AF_INET, socket.AF_INET6):
            remote.append(address)
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--device", "cpu"]) == 0
    html = (out / "index.html").read_text()
    for name in ("scream", "wave", "wreck", "udnie"):
        assert f"style-{name}.png" in html and (out / f"style-{name}.png").exists()
    for scale in (2, 4, 8):
        assert (out / f"sr-x{scale}-bicubic.png").exists() and (out / f"sr-x{scale}-srgan-x{scale}.png").exists()
    assert "PSNR" in html
    sheet = Image.open(out / "contact-sheet.png")
    assert sheet.width > 500 and sheet.height > 500
    assert not remote
