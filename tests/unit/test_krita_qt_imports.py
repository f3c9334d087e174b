"""The Krita plugin reaches Qt only through qt.py, and spells enums the way both PyQt5 and PyQt6 read them.

Krita 6 refuses PyQt5 (importing it raises inside Krita), and PyQt6 knows enum members only by their
scoped names (`QMessageBox.StandardButton.Yes`, not `QMessageBox.Yes`). The Qt6 test exercises the
docker and the dialogs; this one reads every module, so a line no test runs cannot slip through."""

from __future__ import annotations

import ast
import re

import pytest
from plugin_loader import KRITA_DIR

MODULES = sorted(p for p in KRITA_DIR.glob("*.py") if p.name != "qt.py")
# A Qt class followed by a capitalised name that is not itself followed by a dot: an unscoped enum
# member (`Qt.AlignLeft`, `QMessageBox.Yes`). Scoped ones (`Qt.AlignmentFlag.AlignLeft`) have the dot.
UNSCOPED = re.compile(r"\b(Qt|Q[A-Z]\w+)\.([A-Z]\w*)\b(?!\s*\.)")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_module_imports_a_qt_binding_itself(path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        for name in names:
            assert not name.startswith(("PyQt5", "PyQt6", "PySide")), (
                f"{path.name}:{node.lineno} imports {name}: import Qt names from .qt instead")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_enums_are_spelled_scoped(path) -> None:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        code = line.split("#", 1)[0]
        for match in UNSCOPED.finditer(code):
            pytest.fail(f"{path.name}:{number}: {match.group(0)} is unscoped; PyQt6 wants e.g. "
                        f"{match.group(1)}.<EnumName>.{match.group(2)}")


def test_the_check_catches_what_it_should() -> None:
    assert UNSCOPED.search("if answer != QMessageBox.Yes:")
    assert UNSCOPED.search("Qt.AlignLeft | Qt.AlignTop")
    assert not UNSCOPED.search("QMessageBox.StandardButton.Yes")
    assert not UNSCOPED.search("Qt.AlignmentFlag.AlignLeft")
    assert not UNSCOPED.search("QFileDialog.getOpenFileName(self)")
