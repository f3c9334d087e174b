"""Thin pure-Python client for `impasto serve`, shared by the Krita and GIMP plugins (see ../README.md)."""

import os

# The plugins run inside editors' bundled Pythons, which cannot load protobuf's compiled backend reliably;
# this must be set before protobuf is first imported (it is read once, at import).
os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")

from impasto_common import Progress, buffer_size  # noqa: E402

from impasto_client.client import (  # noqa: E402
    CHUNK_SIZE,
    DEFAULT_ADDRESS,
    ImageResult,
    ImpastoClient,
    ModelEntry,
    ServerInfo,
)
from impasto_client.errors import BackendError, BackendNotRunning, OperationCancelled  # noqa: E402

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_ADDRESS",
    "BackendError",
    "BackendNotRunning",
    "ImageResult",
    "ImpastoClient",
    "ModelEntry",
    "OperationCancelled",
    "Progress",
    "ServerInfo",
    "buffer_size",
]
