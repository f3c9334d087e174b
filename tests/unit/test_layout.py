"""The package layout is the architecture (docs/dev/architecture.md): layers import only downward, there are
no import cycles, and the CLI's front door does not load torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "backend" / "impasto"

# Lower number = lower layer. A module may import its own package and any lower layer, nothing else.
LAYER = {
    "errors": 0, "cancel": 0, "device": 0, "_proto": 0, "": 0,
    "nets": 1, "models": 2, "train": 3, "engine": 4, "serve": 5, "batch": 5, "study": 5, "cli": 6, "__main__": 7,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every impasto module this file imports, at the top or inside functions (lazy imports count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "impasto":
                found.update(f"impasto.{a.name}" for a in node.names)
            elif node.module.startswith("impasto."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("impasto."))
    return found


def _graph() -> dict[str, set[str]]:
    files = [p for p in PKG.rglob("*.py") if "_proto" not in p.parts]
    modules = {_module_name(p): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imp in _imports(path):
            # `from impasto.cli import batch` names a module; `from impasto.engine.engine import X` a module too
            while imp not in modules and "." in imp:
                imp = imp.rsplit(".", 1)[0]
            if imp in modules and imp != name:
                targets.add(imp)
        graph[name] = targets
    return graph


def _package(module: str) -> str:
    """The layer's name: the subpackage, or "" for the foundation (errors, cancel, device, the package itself)."""
    parts = module.split(".")
    if len(parts) == 1 or (len(parts) == 2 and parts[1] not in LAYER or parts[1] in ("errors", "cancel", "device")):
        return ""
    return parts[1]


def test_layers_import_only_downward() -> None:
    wrong = []
    for src, targets in _graph().items():
        for dst in targets:
            a, b = _package(src), _package(dst)
            if a != b and LAYER[b] >= LAYER[a]:
                wrong.append(f"{src} -> {dst}")
    assert not wrong, "imports that run sideways or up:\n" + "\n".join(sorted(wrong))


def test_training_does_not_import_the_engine() -> None:
    graph = _graph()
    assert not [d for s, ds in graph.items() if _package(s) == "train" for d in ds if _package(d) == "engine"]


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_every_package_says_what_it_owns() -> None:
    for pkg in ("engine", "serve", "train", "batch", "cli", "nets", "models"):
        doc = ast.get_docstring(ast.parse((PKG / pkg / "__init__.py").read_text())) or ""
        assert len(doc) > 80, f"impasto/{pkg}/__init__.py needs a docstring saying what it owns"


def test_cli_front_door_does_not_load_torch() -> None:
    code = "import sys, impasto.cli as c; c.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
