"""The run store: finished units are reused, deleted ones re-run, failures are contained."""

import json

import pytest

from paper.units import RunStore, Unit, pending, run_units


def _chain():
    base = Unit("pretrain", {"method": "vicreg"}, label="base")
    cont = [Unit("continue", {"criterion": c}, deps=(base,), label=c) for c in ("none", "e2mc")]
    evals = [
        Unit("evaluate", {"protocol": p}, deps=(c,), label=f"{p} {c.label}")
        for c in cont for p in ("knn", "linear")
    ]
    return base, cont, evals


class Recorder:
    """Fake executors: record each call; training units write a checkpoint artifact."""

    def __init__(self, fail: set[str] = frozenset()):
        self.calls: list[str] = []
        self.fail = fail

    def __call__(self, unit, folder, store):
        self.calls.append(unit.label)
        if unit.label in self.fail:
            raise RuntimeError(f"boom in {unit.label}")
        for d in unit.deps:  # the executor reads its dependency's artifact
            assert (store.folder(d) / "ckpt.pt").is_file(), f"{d.label} artifact missing"
        if unit.kind != "evaluate":
            (folder / "ckpt.pt").write_bytes(b"weights")
            return {"artifacts": ["ckpt.pt"]}
        return {"metrics": {"acc": float(len(unit.label))}}

    def executors(self):
        return {k: self for k in ("pretrain", "continue", "evaluate")}


def test_second_invocation_reruns_nothing_and_deleted_unit_reruns(tmp_path):
    base, cont, evals = _chain()
    store = RunStore(tmp_path)
    rec = Recorder()
    first = run_units(evals, store, rec.executors(), progress=False)
    assert len(first.ran) == 1 + 2 + 4 and not first.failed
    assert rec.calls[0] == "base"  # dependencies first

    rec2 = Recorder()
    second = run_units(evals, store, rec2.executors(), progress=False)
    assert rec2.calls == [] and second.ran == [] and len(second.reused) == 7

    # delete one evaluation: only it runs again
    (tmp_path / evals[1].key / "result.json").unlink()
    rec3 = Recorder()
    run_units(evals, store, rec3.executors(), progress=False)
    assert rec3.calls == [evals[1].label]
    record = json.loads((tmp_path / evals[1].key / "result.json").read_text())
    assert record["key"] == evals[1].key
    assert record["result"]["metrics"]["acc"] == len("linear none")


def test_missing_checkpoint_reruns_parent_only_when_needed(tmp_path):
    base, cont, evals = _chain()
    store = RunStore(tmp_path)
    run_units(evals, store, Recorder().executors(), progress=False)
    # a fresh checkout: results committed, checkpoints not
    for u in (base, *cont):
        (tmp_path / u.key / "ckpt.pt").unlink()
    assert pending(evals, store) == []  # nothing needs the checkpoints
    (tmp_path / evals[3].key / "result.json").unlink()  # an evaluation of cont[1] is gone
    todo = pending(evals, store)
    assert [u.label for u in todo] == ["base", "e2mc", evals[3].label]
    rec = Recorder()
    run_units(evals, store, rec.executors(), progress=False)
    assert rec.calls == ["base", "e2mc", evals[3].label]


def test_failed_unit_skips_dependents_and_keeps_going(tmp_path):
    base, cont, evals = _chain()
    store = RunStore(tmp_path)
    rec = Recorder(fail={"none"})
    summary = run_units(evals, store, rec.executors(), progress=False)
    assert summary.failed == [cont[0].key]
    assert set(summary.skipped) == {evals[0].key, evals[1].key}
    assert "boom in none" in (tmp_path / cont[0].key / "error.txt").read_text()
    assert store.is_done(evals[2]) and store.is_done(evals[3])
    # after the fix the failed unit and its dependents run, nothing else
    rec2 = Recorder()
    run_units(evals, store, rec2.executors(), progress=False)
    assert sorted(rec2.calls) == sorted(["none", evals[0].label, evals[1].label])
    assert not (tmp_path / cont[0].key / "error.txt").exists()


def test_store_rejects_foreign_or_corrupt_results(tmp_path):
    base, _, _ = _chain()
    store = RunStore(tmp_path)
    folder = store.folder(base)
    (folder / "result.json").write_text("{not json")
    assert not store.is_done(base)
    (folder / "result.json").write_text(json.dumps({"key": "0" * 16}))
    assert not store.is_done(base)


def test_gitignore_keeps_json_and_drops_artifacts(tmp_path):
    store = RunStore(tmp_path)
    store.ensure_gitignore()
    rules = (tmp_path / ".gitignore").read_text().splitlines()
    assert "*.pt" in rules and "features/" in rules
    assert not any(r.strip() in ("*.json", "*") for r in rules)


def test_unknown_kind_without_executor(tmp_path):
    base, _, _ = _chain()
    with pytest.raises(ValueError, match="no executor"):
        run_units([base], RunStore(tmp_path), {}, progress=False)
