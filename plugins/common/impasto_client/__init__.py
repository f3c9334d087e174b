"""Thin pure-Python client for `impasto serve`, shared by the Krita and GIMP plugins (see ../README.md).

Importing it either works or raises `ClientUnavailable` (an ImportError, which the plugins catch) whose
message says what is wrong and what to do: an editor Python too old or without matching wheels, or a
vendored package that fails on this Python in any way (a SyntaxError, TypeError, ... at import)."""

import os
import sys

# The plugins run inside editors' bundled Pythons, which cannot load protobuf's compiled backend reliably;
# this must be set before protobuf is first imported (it is read once, at import).
os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")


class ClientUnavailable(ImportError):
    """The client cannot run in this Python; the message is for the user, with what to do."""


def _python() -> str:
    return ".".join(map(str, sys.version_info[:3]))


def _vendor_problem() -> str:
    """What impasto_vendor (present in installed plugins, absent in a source checkout) found wrong."""
    try:
        import impasto_vendor
    except ImportError:
        return ""
    return impasto_vendor.problem()


_problem = _vendor_problem()
if not _problem and sys.version_info < (3, 10):
    _problem = f"Impasto's client needs Python 3.10 or newer, and this one is {_python()}"
if _problem:
    raise ClientUnavailable(_problem)

try:
    from impasto_common import Progress, buffer_size

    from impasto_client.client import (
        CHUNK_SIZE,
        DEFAULT_ADDRESS,
        ImageResult,
        ImpastoClient,
        ModelEntry,
        ServerInfo,
    )
    from impasto_client.errors import BackendError, BackendNotRunning, OperationCancelled
except Exception as exc:  # noqa: BLE001 - any failure here means "cannot run in this Python": say so, once
    raise ClientUnavailable(
        f"a package it needs does not load in Python {_python()} ({type(exc).__name__}: {exc}); reinstall "
        "the plugin with `impasto plugin install krita` (or gimp), which picks the packages for each Python"
    ) from exc

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_ADDRESS",
    "BackendError",
    "BackendNotRunning",
    "ClientUnavailable",
    "ImageResult",
    "ImpastoClient",
    "ModelEntry",
    "OperationCancelled",
    "Progress",
    "ServerInfo",
    "buffer_size",
]
