"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from editors import free_port
from impasto_serve_proc import ServeProcess


@pytest.fixture(scope="module")
def backend() -> Iterator[str]:
    """A real `impasto serve` (CPU) on a free loopback port for this module's tests; yields its address."""
    with ServeProcess() as server:
        yield server.address


@pytest.fixture(scope="module")
def unused_address() -> str:
    """A loopback address where no backend listens."""
    return f"127.0.0.1:{free_port()}"
