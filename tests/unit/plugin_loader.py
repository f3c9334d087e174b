"""Loads the plugins' source as the editors would find it once installed, for the tests/unit/test_krita_*.py,
test_gimp_logic.py and test_plugin_common.py files.

plugins/common goes on sys.path, as the installer's _vendor folder does in the editors. The Krita plugin
loads under another name: the backend package already owns `impasto`."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
COMMON_DIR = ROOT / "plugins" / "common"
KRITA_DIR = ROOT / "plugins" / "krita" / "impasto"
GIMP_LOGIC = ROOT / "plugins" / "gimp" / "impasto" / "impasto_logic.py"
NAME = "impasto_krita_plugin"


def common_on_path() -> None:
    """Make plugins/common (impasto_common, impasto_client) importable."""
    path = str(COMMON_DIR)
    if path not in sys.path:
        sys.path.insert(0, path)


def load_common() -> ModuleType:
    """plugins/common/impasto_common.py: standard library only, so importing it changes nothing else."""
    common_on_path()
    return importlib.import_module("impasto_common")


def load(submodule: str = "") -> ModuleType:
    """The Krita plugin package (or one of its modules), as `impasto_krita_plugin[.submodule]`."""
    common_on_path()
    if NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            NAME, KRITA_DIR / "__init__.py", submodule_search_locations=[str(KRITA_DIR)]
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[NAME] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{NAME}.{submodule}") if submodule else sys.modules[NAME]


def load_gimp_logic() -> ModuleType:
    """The GIMP plug-in's pure logic (impasto_logic.py), which GIMP imports from the plug-in's folder."""
    common_on_path()
    if "impasto_logic" not in sys.modules:
        spec = importlib.util.spec_from_file_location("impasto_logic", GIMP_LOGIC)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["impasto_logic"] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules["impasto_logic"]
