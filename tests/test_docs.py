"""Documentation references: every tracked file points only at documents inside the repository.

The project's own documentation is ``docs/*.md``; a reference to a document that is not in the
repository (the old out-of-tree notes, a renamed or missing ``docs/`` page, a broken relative
Markdown link) is an error a reader cannot follow.
"""

from __future__ import annotations

import doctest
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: out-of-tree notes the project once cited; written as patterns so this file does not cite them
OUT_OF_TREE = re.compile(r"\b(?:METHOD|ESTIMATORS|STYLE)\.md\b|shared[/\\]docs\b")
#: a path into the repository's docs folder, bare (``docs/x.md``) or relative (``../../docs/x.md``)
DOCS_PATH = re.compile(r"(?<![\w.:/-])((?:\.\./)*)docs/([\w/.-]*\w\.(?:md|py|txt))")
#: the target of a relative Markdown link ``[text](target)`` or ``[text](target#anchor)``
MD_LINK = re.compile(r"\]\((?!https?:|mailto:|#)([^)#\s]+)(?:#[^)\s]*)?\)")
#: fenced code blocks and inline code spans of Markdown, where ``](...)`` is code, not a link
MD_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)
#: the out-of-tree names, for the scanner's own tests (this file is their test data)
OLD = ("METHOD", "ESTIMATORS", "STYLE")


def tracked_files() -> list[Path]:
    """The files git tracks in this checkout; skips when the tree is not a git checkout."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout, cannot list tracked files: {exc}")
    return [ROOT / name for name in out.split("\0") if name]


def read_text(path: Path) -> str | None:
    """The file's text, or None for binary files (checkpoints, images)."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def bad_references(path: Path, text: str, root: Path = ROOT) -> list[str]:
    """Every reference in ``text`` (the content of ``path``) that leads outside the repository."""
    problems = [f"cites an out-of-tree document: {m.group(0)!r}"
                for m in OUT_OF_TREE.finditer(text)]
    for m in DOCS_PATH.finditer(text):
        ups, name = m.groups()
        base = path.parent if ups else root
        if not (base / ups / "docs" / name).resolve().is_file():
            problems.append(f"refers to a missing file: {m.group(0)!r}")
    if path.suffix == ".md":
        for m in MD_LINK.finditer(MD_CODE.sub("", text)):
            if not (path.parent / m.group(1)).resolve().exists():
                problems.append(f"links to a missing file: {m.group(1)!r}")
    return problems


def test_no_tracked_file_refers_outside_the_repository():
    problems = []
    for path in tracked_files():
        if path == Path(__file__).resolve():
            continue  # its strings are the scanner's test data
        text = read_text(path) if path.is_file() else None
        if text is not None:
            problems += [f"{path.relative_to(ROOT)}: {p}" for p in bad_references(path, text)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("text", [
    f"see {OLD[0]}.md section 2",
    f"({OLD[1]}.md, section 6)",
    f"{OLD[2]}.md says",
    "/work/shared" + "/docs/notes",
    "docs/no_such_page.md",
    "the layouts of docs/method_v2.md",
])
def test_scanner_flags_out_of_tree_and_missing_documents(text, tmp_path):
    (tmp_path / "docs").mkdir()
    assert bad_references(tmp_path / "a.py", text, root=tmp_path)


def test_scanner_follows_relative_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "method.md").write_text("# Method\n")
    sub = tmp_path / "paper" / "imagenet"
    sub.mkdir(parents=True)
    ok = "docs/method.md, [the method](../../docs/method.md#the-criterion), https://x.org/docs/a.md"
    assert bad_references(sub / "README.md", ok, root=tmp_path) == []
    assert bad_references(sub / "README.md", "[m](../docs/method.md)", root=tmp_path)
    assert bad_references(sub / "README.md", "[m](missing.md)", root=tmp_path)
    assert bad_references(sub / "README.md", "`f(**kw)` and [m](x.md)", root=tmp_path)
    assert bad_references(sub / "README.md", "```\nf(**kw)\n```\n`g(*a)`", root=tmp_path) == []


def test_importing_every_module_is_silent_and_writes_nothing(tmp_path):
    """Doctest collection and the API reference import every module: importing must not print,
    warn, or write files (work belongs in functions, not at import time)."""
    code = (
        "import importlib, pkgutil\n"
        "for package in ('entropylib', 'adapters', 'evaluation', 'paper'):\n"
        "    root = importlib.import_module(package)\n"
        "    for info in pkgutil.walk_packages(root.__path__, package + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "print('imported')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(ROOT), os.environ.get("PYTHONPATH", "")]))}
    out = subprocess.run([sys.executable, "-W", "always", "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "imported\n" and out.stderr == "", out.stdout + out.stderr
    assert list(tmp_path.iterdir()) == []


#: pytest's --doctest-modules never collects ``__main__.py`` files; their examples run here
MAIN_MODULES = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts)
    for package in ("entropylib", "adapters", "evaluation", "paper")
    for path in (ROOT / package).rglob("__main__.py")
    if ">>>" in path.read_text()
)


@pytest.mark.parametrize("name", MAIN_MODULES)
def test_main_module_examples(name):
    result = doctest.testmod(importlib.import_module(name),
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def _numeric_rows(text: str) -> set[tuple[str, ...]]:
    """The ``bias / RMSE`` cells of every Markdown table row holding them."""
    rows = set()
    for line in text.splitlines():
        cells = re.findall(r"[+-]\d+\.\d+ / \d+\.\d+", line)
        if line.startswith("|") and cells:
            rows.add(tuple(cells))
    return rows


def test_estimator_guide_tables_are_the_measured_ones():
    """docs/estimators.md copies its bias/RMSE tables from the benchmark's output file."""
    guide = _numeric_rows((ROOT / "docs" / "estimators.md").read_text())
    measured = _numeric_rows((ROOT / "benchmarks" / "results" / "accuracy.md").read_text())
    assert len(guide) >= 30  # the marginal tables at least
    assert guide <= measured, sorted(guide - measured)
