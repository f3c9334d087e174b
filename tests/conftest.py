from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} is missing: the tests need ../shared/data beside the checkout")
    return SHARED


@pytest.fixture()
def impasto_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty user model folder for this test."""
    monkeypatch.setenv("IMPASTO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"
