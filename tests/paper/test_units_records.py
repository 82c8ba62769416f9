"""What a stored record says and how it is written: wall time, layout, git-ignore rules."""

import json
import types
from pathlib import Path

import pytest

from paper import units
from paper.units import RunStore, Unit, run_units


def test_each_unit_records_the_wall_time_of_its_own_run(tmp_path, monkeypatch):
    # a fake clock that only the executors move: the base takes 2.5 s, the continuation 0.75 s
    now = [1000.0]
    monkeypatch.setattr(units, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    took = {"base": 2.5, "e2mc": 0.75}

    def executor(unit, folder, store):
        now[0] += took[unit.label]
        return {}

    base = Unit("pretrain", {"method": "vicreg"}, label="base")
    cont = Unit("continue", {"criterion": "e2mc"}, deps=(base,), label="e2mc")
    store = RunStore(tmp_path)
    summary = run_units([cont], store, {"pretrain": executor, "continue": executor},
                        progress=False)
    assert store.load(base)["seconds"] == 2.5
    assert store.load(cont)["seconds"] == 0.75
    assert summary.seconds == 3.25


def test_the_record_keeps_the_wall_time_to_the_millisecond(tmp_path):
    unit = Unit("pretrain", {"method": "vicreg"})
    store = RunStore(tmp_path)
    assert store.save(unit, {}, 1.23456)["seconds"] == 1.235
    on_disk = json.loads((tmp_path / unit.key / "result.json").read_text())
    assert on_disk["seconds"] == 1.235


def test_a_stale_gitignore_is_replaced_by_the_current_rules(tmp_path):
    # a runs folder from an older version that ignored checkpoints only
    (tmp_path / ".gitignore").write_text("*.pt\n")
    RunStore(tmp_path).ensure_gitignore()
    rules = (tmp_path / ".gitignore").read_text().splitlines()
    # the feature caches, numpy arrays and failure tracebacks are not committed either
    assert {"*.pt", "*.npz", "features/", "error.txt"} <= set(rules)


def test_a_rerun_unit_rewrites_only_when_and_where_it_ran_in_its_committed_result(tmp_path):
    # on a fresh checkout a unit whose checkpoint a later unit needs runs again; its new
    # result.json must differ from the committed one in the lines that say when and on what
    # machine it ran, not in every line (the diff a reviewer reads)
    committed = sorted(Path(units.__file__).parent.glob("runs/*/result.json"))
    old_text = next((p.read_text() for p in committed if not json.loads(p.read_text())["deps"]),
                    None)
    if old_text is None:
        pytest.skip("no committed result of a unit without dependencies under paper/runs")
    old = json.loads(old_text)
    unit = Unit(old["kind"], old["config"], label=old["label"])
    assert unit.key == old["key"]
    new = RunStore(tmp_path).save(unit, old["result"], old["seconds"])
    new_text = (tmp_path / unit.key / "result.json").read_text()
    when_and_where = {"finished": (new["finished"], old["finished"]),
                      **{k: (new["host"][k], old["host"][k]) for k in old["host"]}}
    for name, (now, was) in when_and_where.items():
        new_text = new_text.replace(f'"{name}": {json.dumps(now)}',
                                    f'"{name}": {json.dumps(was)}', 1)
    assert new_text == old_text
