"""Fixtures and rules shared by every test.

Test data: `../shared/data` beside the checkout (images, SR sets, weights the project may not ship). A
user's fresh clone has no `../shared`: tests that need it skip with a reason. CI sets IMPASTO_REQUIRE_SHARED=1
(as it sets IMPASTO_REQUIRE_EDITORS and IMPASTO_REQUIRE_RAY), which turns those skips into failures, so where the
data exists nothing is skipped. A test asks for the data with the `shared` fixture or, for one path, the
`shared_data("sub/path")` mark."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
REQUIRE_SHARED = os.environ.get("IMPASTO_REQUIRE_SHARED") == "1"


def need_shared(*parts: str) -> Path:
    """The path under ../shared/data, or skip (fail under IMPASTO_REQUIRE_SHARED=1) when it is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        reason = f"{path} is missing: these tests need the project's data in ../shared/data beside the checkout"
        if REQUIRE_SHARED:
            pytest.fail(reason + " (IMPASTO_REQUIRE_SHARED=1 makes this a failure)", pytrace=False)
        pytest.skip(reason)
    return path


def pytest_configure(config: pytest.Config) -> None:
    # Converted models (the OpenVINO runtime's disk cache) go to a folder of the checkout, not the user's cache:
    # the tests never touch a user's files, and a second run reuses the conversions. Servers the tests start
    # inherit it.
    os.environ.setdefault("IMPASTO_CACHE", str(ROOT / ".cache" / "test-model-cache"))
    config.addinivalue_line("markers", "shared_data(*paths): needs these paths under ../shared/data")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("shared_data"):
        for sub in mark.args:
            need_shared(*Path(sub).parts)


@pytest.fixture(scope="session")
def shared() -> Path:
    return need_shared()


@pytest.fixture()
def impasto_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty user model folder for this test."""
    monkeypatch.setenv("IMPASTO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture()
def openvino_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One OpenVINO conversion cache for the whole test run (conversions take seconds), away from the user's."""
    from impasto.engine import runtime

    root = tmp_path_factory.getbasetemp() / "impasto-cache"
    monkeypatch.setenv(runtime.CACHE_ENV, str(root))
    return root
