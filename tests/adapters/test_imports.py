"""Layers go one way: adapters never imports evaluation, and no two adapters files import each
other, directly or around a loop (type-checking imports count too)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "adapters"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_adapters_never_import_evaluation():
    for path in PACKAGE.rglob("*.py"):
        assert not any(n.split(".")[0] == "evaluation" for n in _imports(path)), path


def test_no_import_cycles_between_adapters_files():
    files = {_module(p): p for p in PACKAGE.rglob("*.py")}
    # a package's __init__ is where its submodules are re-exported from, not a file cycle
    graph = {m: {n for n in _imports(p) if n in files and n != m and not m.startswith(n + ".")
                 and n != "adapters"}
             for m, p in files.items()}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join([*path, module]))
        if module in done:
            return
        for nxt in graph[module]:
            visit(nxt, [*path, module])
        done.add(module)

    for module in graph:
        visit(module, [])
