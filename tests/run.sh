#!/usr/bin/env bash
# The one test command (README, .ci/run): install into .venv, lint, type-check, run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import impasto, torch, grpc" # the install must have worked
echo "== ruff"
.venv/bin/ruff check backend tests plugins benchmarks
echo "== mypy"
.venv/bin/mypy backend/impasto
echo "== pytest"
.venv/bin/python -m pytest -q "$@"
