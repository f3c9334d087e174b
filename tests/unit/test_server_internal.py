"""A bug in the engine becomes INTERNAL with the traceback in the server log, and the server carries on.
(A real grpcio server in this process; the engine is a stand-in that fails on purpose.)"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import pytest
from impasto import errors
from impasto.serve.client import Client
from impasto.serve.server import ImpastoServer, ServerConfig


class BrokenEngine:
    device = SimpleNamespace(type="cpu")
    device_name = "cpu (test)"
    config = SimpleNamespace(max_pixels=10_000)

    def models(self, kind: str | None = None) -> list[object]:
        return []

    def operations(self) -> list[str]:
        return ["stylize"]

    def check_size(self, width: int, height: int) -> None:
        if width * height > self.config.max_pixels:
            raise errors.ResourceExhausted("too big")

    def stylize(self, image: object, style: str, **options: object) -> object:
        return 1 / 0  # the bug


@pytest.fixture()
def server() -> Iterator[ImpastoServer]:
    srv = ImpastoServer(BrokenEngine(), ServerConfig(address="127.0.0.1:0", grace=0.5))  # type: ignore[arg-type]
    srv.start()
    yield srv
    srv.stop()


def test_bug_becomes_internal_and_is_logged(server: ImpastoServer, caplog: pytest.LogCaptureFixture) -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    with caplog.at_level(logging.ERROR, logger="impasto.serve.server"), Client(server.address) as client:
        with pytest.raises(errors.ImpastoError, match="internal error in Stylize: ZeroDivisionError") as info:
            client.stylize(image, "any")
        assert type(info.value) is errors.ImpastoError  # not one of the domain errors
        np.testing.assert_array_equal(client.echo(image), image)  # still serving
        assert client.info().device == "cpu (test)"
    record = next(r for r in caplog.records if "unexpected error in Stylize" in r.getMessage())
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError
