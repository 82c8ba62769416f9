"""Mutation testing of one module against its mirrored tests (how to use: docs/mutation.md).

A mutant is the module with one small, plausible mistake in it: a flipped or off-by-one
comparison, an integer constant +-1, a swapped arithmetic operator, a dropped clamp
(min/max/clamp/clip), a swapped rounding function, a negated condition, or a return value
without its last transform. Each sampled mutant is written over the module, the module's tests
run (``-x``, with a timeout), and the original file is restored, always (also on Ctrl-C or
SIGTERM). A mutant the tests do not fail on "survives": either it is equivalent to the original
(no input can tell them apart) or the tests have a blind spot.

    python mutation/mutate.py entropylib/spacings.py                  # 40 mutants, seed 0
    python mutation/mutate.py entropylib/validation.py \
        --tests tests/entropylib/test_estimate_validation.py     # tests named otherwise
    python mutation/mutate.py evaluation/subsets.py --ids 7,12        # rerun chosen mutants
    python mutation/mutate.py evaluation/subsets.py --list            # list, run nothing

The tests are ``tests/<package path>/test_<module name>*.py`` unless ``--tests`` is given.

A module with numba kernels (``@njit``) is run against a numba cache of its own: the unmutated
run fills a temporary cache, and every mutant starts from a copy of it without the module's own
entries, so the mutant's kernels are compiled from its source and nothing compiled from a mutant
outlives its run (or reaches the checkout's ``__pycache__``).
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# comparison operators: off-by-one at the boundary, and the negation
COMPARE_SWAPS = {
    ast.Lt: (ast.LtE, ast.GtE),
    ast.LtE: (ast.Lt, ast.Gt),
    ast.Gt: (ast.GtE, ast.LtE),
    ast.GtE: (ast.Gt, ast.Lt),
    ast.Eq: (ast.NotEq,),
    ast.NotEq: (ast.Eq,),
    ast.Is: (ast.IsNot,),
    ast.IsNot: (ast.Is,),
    ast.In: (ast.NotIn,),
    ast.NotIn: (ast.In,),
}
ARITHMETIC_SWAPS = {
    ast.Add: (ast.Sub,),
    ast.Sub: (ast.Add,),
    ast.Mult: (ast.Div,),
    ast.Div: (ast.Mult,),
    ast.FloorDiv: (ast.Div,),
    ast.Mod: (ast.FloorDiv,),
    ast.Pow: (ast.Mult,),
}
ROUNDING_SWAPS = {"round": "int", "int": "round", "floor": "ceil", "ceil": "floor", "rint": "floor"}
CLAMPS = {"clamp", "clamp_min", "clamp_max", "clip", "maximum", "minimum"}
# calls whose arguments are messages, not computation
MESSAGE_CALLS = {"warn", "print", "debug", "info", "warning", "error"}


@dataclass(frozen=True)
class Mutant:
    id: int
    line: int
    operator: str
    before: str
    after: str
    start: int  # character offsets of the replaced source text
    end: int

    def change(self, source: str) -> str:
        """'before -> after', with some of the line around it when the replaced text is short."""
        if len(self.before) >= 12 or "\n" in self.before:
            return f"{_short(self.before)} -> {_short(self.after)}"
        line_start = source.rfind("\n", 0, self.start) + 1
        line_end = source.find("\n", self.end)
        left = source[max(line_start, self.start - 30) : self.start].lstrip()
        if self.start - 30 > line_start:  # cut at a word boundary
            left = left.partition(" ")[2]
        right = source[self.end : min(line_end, self.end + 20)].rstrip()
        return f"{left}{self.before}{right} -> {left}{self.after}{right}"


def _name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _skipped_nodes(tree: ast.Module) -> set[int]:
    """ids of nodes never mutated: messages, annotations, decorators, __all__, docstrings."""
    roots: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise | ast.JoinedStr):
            roots.append(node)
        elif isinstance(node, ast.Call) and _name(node.func) in MESSAGE_CALLS:
            roots.append(node)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            roots += node.decorator_list + [a.annotation for a in _all_args(node.args)]
            roots.append(node.returns)
        elif isinstance(node, ast.ClassDef):
            roots += node.decorator_list
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
        elif isinstance(node, ast.Assign) and any(
            getattr(t, "id", "") == "__all__" for t in node.targets
        ):
            roots.append(node)
    return {id(n) for root in roots if root is not None for n in ast.walk(root)}


def _all_args(args: ast.arguments) -> list[ast.arg]:
    extra = [a for a in (args.vararg, args.kwarg) if a is not None]
    return args.posonlyargs + args.args + args.kwonlyargs + extra


def _replacements(node: ast.AST) -> list[tuple[str, ast.AST, ast.AST]]:
    """(operator, node replaced, replacement node) for every mutation of one node."""
    out: list[tuple[str, ast.AST, ast.AST]] = []
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            for new in COMPARE_SWAPS.get(type(op), ()):
                mutated = copy.deepcopy(node)
                mutated.ops[i] = new()
                out.append(("comparison", node, mutated))
    elif isinstance(node, ast.BinOp | ast.AugAssign):
        for new in ARITHMETIC_SWAPS.get(type(node.op), ()):
            mutated = copy.deepcopy(node)
            mutated.op = new()
            out.append(("arithmetic", node, mutated))
    elif isinstance(node, ast.Constant) and type(node.value) is int:
        for delta in (1, -1):
            out.append(("constant +-1", node, ast.Constant(node.value + delta)))
    elif isinstance(node, ast.BoolOp):
        mutated = copy.deepcopy(node)
        mutated.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        out.append(("and/or", node, mutated))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.Not):
        out.append(("drop sign/not", node, node.operand))
    elif isinstance(node, ast.Call):
        out += _call_replacements(node)
    if isinstance(node, ast.If | ast.While | ast.IfExp):
        out.append(("negate condition", node.test, ast.UnaryOp(ast.Not(), node.test)))
    if isinstance(node, ast.comprehension):
        out += [("negate condition", c, ast.UnaryOp(ast.Not(), c)) for c in node.ifs]
    if isinstance(node, ast.Return) and node.value is not None:
        out += _return_replacements(node.value)
    return out


def _call_replacements(node: ast.Call) -> list[tuple[str, ast.AST, ast.AST]]:
    name = _name(node.func)
    out: list[tuple[str, ast.AST, ast.AST]] = []
    if name in ROUNDING_SWAPS and node.args:
        func = copy.deepcopy(node.func)
        if isinstance(func, ast.Attribute):
            func.attr = ROUNDING_SWAPS[name]
        else:
            func.id = ROUNDING_SWAPS[name]
        out.append(("rounding", node.func, func))
    if name in ("min", "max") and isinstance(node.func, ast.Name) and len(node.args) == 2:
        out += [("drop min/max", node, arg) for arg in node.args]
    elif name in CLAMPS:
        if isinstance(node.func, ast.Attribute) and not _is_module(node.func.value):
            out.append(("drop clamp", node, node.func.value))  # x.clamp(...) -> x
        elif node.args:
            out.append(("drop clamp", node, node.args[0]))  # np.clip(x, ...) -> x
    return out


def _is_module(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id in ("np", "numpy", "torch", "math")


def _return_replacements(value: ast.expr) -> list[tuple[str, ast.AST, ast.AST]]:
    """return f(x) -> return x; return x.f() -> return x; return a op b -> return a."""
    if isinstance(value, ast.Call) and value.args and not isinstance(value.args[0], ast.Starred):
        if _name(value.func) not in ("tuple", "list", "dict", "set"):
            return [("drop return transform", value, value.args[0])]
    if isinstance(value, ast.Call) and not value.args and isinstance(value.func, ast.Attribute):
        if not _is_module(value.func.value):
            return [("drop return transform", value, value.func.value)]
    if isinstance(value, ast.BinOp):
        return [("drop return transform", value, value.left)]
    return []


def find_mutants(source: str) -> list[Mutant]:
    """Every mutant of ``source``, in source order, numbered from 1."""
    tree = ast.parse(source)
    skipped = _skipped_nodes(tree)
    starts = _line_starts(source)
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        for operator, old, new in _replacements(node):
            if id(old) in skipped or not hasattr(old, "end_col_offset"):
                continue
            start = starts[old.lineno - 1] + _char_col(source, starts, old.lineno, old.col_offset)
            end = starts[old.end_lineno - 1] + _char_col(
                source, starts, old.end_lineno, old.end_col_offset
            )
            text = ast.unparse(new)
            if not isinstance(new, ast.Name | ast.Attribute | ast.Call | ast.Constant):
                text = f"({text})"
            if text != source[start:end] and _compiles(source[:start] + text + source[end:]):
                found.append((start, end, old.lineno, operator, source[start:end], text))
    found = sorted(set(found))
    return [
        Mutant(i + 1, line, op, before, after, start, end)
        for i, (start, end, line, op, before, after) in enumerate(found)
    ]


def _line_starts(source: str) -> list[int]:
    starts, pos = [], 0
    for line in source.splitlines(keepends=True):
        starts.append(pos)
        pos += len(line)
    return starts


def _char_col(source: str, starts: list[int], lineno: int, byte_col: int) -> int:
    """ast columns count UTF-8 bytes; string offsets count characters."""
    line = source[starts[lineno - 1] :].split("\n", 1)[0]
    return len(line.encode()[:byte_col].decode())


def _compiles(source: str) -> bool:
    try:
        compile(source, "<mutant>", "exec")
    except SyntaxError:
        return False
    return True


def default_tests(module: Path) -> list[Path]:
    """tests/<package path>/test_<module name>*.py."""
    rel = module.resolve().relative_to(ROOT)
    folder = ROOT / "tests" / rel.parent
    return sorted(folder.glob(f"test_{rel.stem}*.py"))


class Restorer:
    """Writes mutants over a file and always puts the original back (Ctrl-C, SIGTERM too)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.original = path.read_bytes()
        self.pyc = list((path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"))

    def __enter__(self) -> Restorer:
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGHUP, _interrupt)
        return self

    def write(self, text: str) -> None:
        for pyc in self.pyc:  # a stale .pyc of the same size and second would hide the mutant
            pyc.unlink(missing_ok=True)
        self.path.write_text(text, encoding="utf-8")

    def restore(self) -> None:
        if self.path.read_bytes() != self.original:
            self.path.write_bytes(self.original)

    def __exit__(self, *exc: object) -> None:
        self.restore()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def uses_numba(source: str) -> bool:
    """Whether a module compiles numba kernels (whose machine code numba caches on disk)."""
    return any(
        isinstance(node, ast.Name | ast.Attribute) and _name(node) in ("njit", "jit")
        for node in ast.walk(ast.parse(source))
    )


class NumbaCache:
    """A numba cache for one run: a warm copy for the unmutated tests, a fresh one per mutant.

    numba keys a cached kernel on its source file's modification time and size, so a mutant
    would miss the cache anyway; deleting the module's entries from each mutant's copy makes
    the recompilation certain instead of depending on timestamps, and the copy is thrown away
    after the mutant, so the machine code of a mutant is never loaded by a later run.
    """

    def __init__(self, module: Path) -> None:
        self.prefix = f"{module.stem}."  # numba names its files <module stem>.<function>-...
        self.root = Path(tempfile.mkdtemp(prefix="mutate-numba-"))
        self.warm = self.root / "warm"
        self.warm.mkdir()

    def for_mutant(self) -> Path:
        """A copy of the warm cache without the mutated module's kernels."""
        fresh = self.root / "mutant"
        shutil.rmtree(fresh, ignore_errors=True)
        shutil.copytree(self.warm, fresh, ignore=self._own_entries)
        return fresh

    def _own_entries(self, folder: str, names: list[str]) -> list[str]:
        return [name for name in names if name.startswith(self.prefix)]

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def run_tests(
    tests: list[str], timeout: float | None, numba_cache: Path | None = None
) -> tuple[str, float]:
    """('passed' | 'failed' | 'timeout', seconds) of one pytest run in its own process group.

    ``tests`` are pytest arguments: files, node ids (``file::test``) and options such as ``-k``.
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    if numba_cache is not None:
        env["NUMBA_CACHE_DIR"] = str(numba_cache)
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-n", "0", "-p", "no:cacheprovider"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd + tests,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return "timeout", time.perf_counter() - t0
    finally:
        if proc.poll() is None:  # interrupted: take the test run down with us
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return ("passed" if code == 0 else "failed"), time.perf_counter() - t0


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    module = Path(args.module).resolve()
    source = module.read_text(encoding="utf-8")
    mutants = find_mutants(source)
    chosen = _choose(mutants, args)
    files = [_from_root(t) for t in args.tests] if args.tests else [
        str(t.relative_to(ROOT)) for t in default_tests(module)
    ]
    tests = files + (["-k", args.k] if args.k else [])
    rel = module.relative_to(ROOT)
    print(f"{rel} at commit {_commit()}: {len(mutants)} mutants, running {len(chosen)} "
          f"(seed {args.seed}) against {' '.join(tests)}")
    if args.list:
        for m in chosen:
            print(f"{m.id:4d}  line {m.line:4d}  {m.operator:22s} {m.change(source)}")
        return 0
    if not files:
        sys.exit(f"no tests match tests/{rel.parent}/test_{rel.stem}*.py: give --tests")
    cache = NumbaCache(module) if uses_numba(source) else None
    try:
        results = _run_mutants(module, source, chosen, tests, cache, args)
    finally:
        if cache is not None:
            cache.close()
    _report(results, source)
    return 0


def _run_mutants(
    module: Path,
    source: str,
    chosen: list[Mutant],
    tests: list[str],
    cache: NumbaCache | None,
    args: argparse.Namespace,
) -> list[tuple[Mutant, str]]:
    rel = module.relative_to(ROOT)
    status, base = run_tests(tests, None, cache and cache.warm)
    if status != "passed":
        sys.exit("the tests fail on the unmutated module: fix them before mutating")
    if cache is not None:  # the warm run compiled; the mutants recompile this module's kernels
        status, base = run_tests(tests, None, cache.for_mutant())
        print(f"numba module: each mutant recompiles its kernels in a fresh cache ({cache.root})")
    timeout = args.timeout_factor * base + 10
    print(f"unmutated tests pass in {base:.1f} s; timeout per mutant {timeout:.0f} s")
    results = []
    with Restorer(module) as restorer:
        for m in chosen:
            restorer.write(source[: m.start] + m.after + source[m.end :])
            try:
                status, seconds = run_tests(tests, timeout, cache and cache.for_mutant())
            finally:
                restorer.restore()
            results.append((m, status))
            print(f"{m.id:4d}  line {m.line:4d}  {status:8s} {seconds:6.1f} s  {m.operator}: "
                  f"{m.change(source)}", flush=True)
            if args.log:
                with open(args.log, "a", encoding="utf-8") as fh:
                    record = {"module": str(rel), "status": status, "seconds": round(seconds, 1)}
                    fh.write(json.dumps(record | asdict(m)))
                    fh.write("\n")
    return results


def _from_root(test: str) -> str:
    """A test file or node id given from the current folder, as seen from the repository root."""
    path, sep, node = test.partition("::")
    return f"{os.path.relpath(Path(path).resolve(), ROOT)}{sep}{node}"


def _choose(mutants: list[Mutant], args: argparse.Namespace) -> list[Mutant]:
    if args.ids:
        wanted = {int(i) for i in args.ids.split(",")}
        return [m for m in mutants if m.id in wanted]
    if len(mutants) <= args.max_mutants:
        return mutants
    picked = random.Random(args.seed).sample(mutants, args.max_mutants)
    return sorted(picked, key=lambda m: m.id)


def _report(results: list[tuple[Mutant, str]], source: str) -> None:
    counts = {s: sum(1 for _, st in results if st == s) for s in ("failed", "timeout", "passed")}
    print(f"\nkilled {counts['failed']} (+{counts['timeout']} by timeout), "
          f"survived {counts['passed']} of {len(results)}")
    survivors = [m for m, st in results if st == "passed"]
    if survivors:
        print("\n| id | line | operator | change |\n|---|---|---|---|")
        for m in survivors:
            print(f"| {m.id} | {m.line} | {m.operator} | `{m.change(source)}` |")


def _short(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("module", help="the .py file to mutate, e.g. entropylib/spacings.py")
    p.add_argument("--tests", nargs="+",
                   help="test files or node ids (file::test) "
                   "(default: the mirrored test_<module>*)")
    p.add_argument("-k", help="run only the tests matching this pytest -k expression")
    p.add_argument("--max-mutants", type=int, default=40, help="sample size (default 40)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    p.add_argument("--ids", help="comma-separated mutant ids to run instead of a sample")
    p.add_argument("--timeout-factor", type=float, default=3.0,
                   help="a mutant times out after this many times the unmutated run, + 10 s")
    p.add_argument("--log", help="append one JSON line per mutant to this file")
    p.add_argument("--list", action="store_true", help="list the chosen mutants, run nothing")
    return p


if __name__ == "__main__":
    raise SystemExit(main())
