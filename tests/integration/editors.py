"""What the real-editor tests share (test_krita.py, test_gimp.py and krita_gui.py, which also runs as a
script): skipping or failing when an editor is missing, and free loopback ports."""

from __future__ import annotations

import os
import socket
from typing import NoReturn

import pytest

# Set by .ci/run, where both editors are installed: a missing editor is then a failure, not a skip.
REQUIRE = os.environ.get("IMPASTO_REQUIRE_EDITORS") == "1"


def unavailable(reason: str) -> NoReturn:
    """Skip the test (a newcomer's machine without the editor), or fail it under IMPASTO_REQUIRE_EDITORS=1."""
    if REQUIRE:
        pytest.fail(reason + " — IMPASTO_REQUIRE_EDITORS=1 makes this a failure")
    pytest.skip(reason)


def free_port() -> int:
    """A loopback port nothing listens on right now (bound, noted and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
