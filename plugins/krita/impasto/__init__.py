"""Impasto for Krita: neural style transfer and super-resolution from a local `impasto serve`.

Krita's own Python has no compiled extras, so the installer puts pure-Python wheels (grpclib, h2,
protobuf, ...) and the shared client in `_vendor/` next to this file, the wheels in one folder per Python
version; impasto_vendor puts that folder and the one for Krita's Python on sys.path here, before anything
imports protobuf, which must then use its pure-Python implementation."""

import importlib.util
import os
import sys

VENDOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_vendor")
if os.path.isdir(VENDOR):  # installed; a source checkout (unit tests) has no _vendor and is left alone
    if VENDOR not in sys.path:
        # First on the path: another plugin's older protobuf or grpclib must not shadow the pinned ones.
        sys.path.insert(0, VENDOR)
    os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
    try:
        import impasto_vendor

        impasto_vendor.activate(VENDOR, "krita")
    except Exception:  # noqa: BLE001, S110 - the docker loads anyway; importing the client then says why not
        pass


def _in_krita() -> bool:
    try:
        return importlib.util.find_spec("krita") is not None
    except ValueError:  # a stand-in module without a spec (tests) is not Krita
        return False


if _in_krita():
    # Inside Krita: register the docker and the actions. Elsewhere (unit tests) the modules stay plain.
    from .extension import register

    register()
