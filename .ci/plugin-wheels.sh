#!/usr/bin/env bash
# The editor plugins' pinned pure-Python wheels, for every Python they support, fetched once (from PyPI)
# into $IMPASTO_WHEELS (default .cache/plugin-wheels): the plugin tests install from there, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${IMPASTO_WHEELS:-$PWD/.cache/plugin-wheels}
.venv/bin/python -m impasto plugin wheels --dest "$DEST"
