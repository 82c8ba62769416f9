"""The modules of `evaluation` import one another in one direction (no file cycle)."""

import ast
from pathlib import Path

import evaluation


def _imports(path):
    """evaluation.* modules a file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("evaluation."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("evaluation.")}
    return found


def test_evaluation_modules_form_no_cycle():
    folder = Path(evaluation.__file__).parent
    graph = {f"evaluation.{p.stem}": _imports(p) for p in folder.glob("*.py")
             if p.stem != "__init__"}
    done, active = set(), []

    def visit(module):
        assert module not in active, f"import cycle: {' -> '.join([*active, module])}"
        if module in done:
            return
        active.append(module)
        for dep in sorted(graph.get(module, ())):
            visit(dep)
        active.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
    # the leaf that the probes and the training loop share
    assert graph["evaluation.accuracy"] == set()
    assert "evaluation.linear" not in graph["evaluation.training"]
