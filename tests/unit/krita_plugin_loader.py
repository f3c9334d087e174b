"""Loads plugins/krita/impasto under another name: the backend package already owns `impasto`.
Shared by the tests/unit/test_krita_*.py files."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = ROOT / "plugins" / "krita" / "impasto"
NAME = "impasto_krita_plugin"


def load(submodule: str = "") -> ModuleType:
    if NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            NAME, PLUGIN_DIR / "__init__.py", submodule_search_locations=[str(PLUGIN_DIR)]
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[NAME] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{NAME}.{submodule}") if submodule else sys.modules[NAME]


def common_on_path() -> None:
    """Make plugins/common/impasto_client importable, as the installer's _vendor folder does in Krita."""
    path = str(ROOT / "plugins" / "common")
    if path not in sys.path:
        sys.path.insert(0, path)
