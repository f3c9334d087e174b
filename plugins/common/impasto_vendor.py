"""Puts the client's dependencies for the running Python on sys.path (standard library only, Python 3.8+).

`impasto plugin install` unpacks the pure-Python wheels (grpclib, h2, multidict, protobuf, ...) into one
folder per Python minor version, `_vendor/py310`, `_vendor/py311`, ..., because their pins differ
(multidict 7.2 needs 3.11, for instance). The editor's Python is only known when the plugin runs, so
the plugin calls `activate()` first thing; `impasto_client` then refuses to load, with a message saying what
to do, when `problem()` says the wheels do not fit this Python. Nothing here may fail on an old Python:
it is what turns "the editor's Python is too old" into a message instead of a traceback."""

import os
import re
import sys

# The Pythons the plugins are tested with (backend/impasto/cli/plugin_install.py PYTHONS; a test checks).
OLDEST = (3, 10)
NEWEST = (3, 13)
_FOLDER = re.compile(r"^py(\d)(\d+)$")
_problem = ""


def _text(version):
    return f"{version[0]}.{version[1]}"


def folders(vendor):
    """{(3, 10): ".../_vendor/py310", ...} for the per-Python folders the installer made."""
    found = {}
    try:
        names = os.listdir(vendor)
    except OSError:
        return found
    for name in names:
        match = _FOLDER.match(name)
        if match and os.path.isdir(os.path.join(vendor, name)):
            found[(int(match.group(1)), int(match.group(2)))] = os.path.join(vendor, name)
    return found


def choose(vendor, version=None, editor="krita"):
    """(folder or None, problem or ""): the wheels folder for `version` (default: this Python). A Python
    newer than NEWEST gets the newest folder there is (pure wheels usually keep working)."""
    version = tuple(version or sys.version_info[:2])
    reinstall = f"impasto plugin install {editor}"
    if version < OLDEST:
        return None, (f"Impasto's plugin needs Python {_text(OLDEST)} or newer, and this one is "
                      f"{_text(version)}: use a newer {editor.capitalize()} (Krita 5.2 or newer, GIMP 3)")
    available = folders(vendor)
    if version in available:
        return available[version], ""
    if not available:
        return None, f"the plugin's packages are missing: reinstall it with `{reinstall}`"
    if version > NEWEST:  # newer than the plugin knows: its newest wheels, rather than nothing
        return available[max(available)], ""
    installed = ", ".join(_text(v) for v in sorted(available))
    return None, (f"the plugin was installed for Python {installed}, but this one is {_text(version)}: "
                  f"reinstall it with `{reinstall}` (for every Python, or --python-version {_text(version)})")


def activate(vendor, editor="krita"):
    """Put `vendor` and this Python's wheels folder first on sys.path, ahead of any other copy of
    protobuf or grpclib, and make protobuf use its pure-Python code. Returns the problem ("" when none)."""
    global _problem
    if vendor not in sys.path:
        sys.path.insert(0, vendor)
    folder, _problem = choose(vendor, editor=editor)
    if folder is not None and folder not in sys.path:
        sys.path.insert(0, folder)
    # Compiled protobuf backends are not reliable in editors' Pythons; read once, when protobuf loads.
    os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
    return _problem


def problem():
    """Why the client cannot load in this Python ("" when it can, or when activate() was not called)."""
    return _problem
