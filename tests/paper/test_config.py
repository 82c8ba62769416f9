"""Run names: the configuration hash is stable across processes and sensitive to every field."""

import dataclasses
import hashlib
import json
import os
import subprocess
import sys

import pytest

from paper import config as cfg
from paper.plan import build_plan
from paper.units import Unit


def _perturbed(value):
    """A different value of the same kind, for any field type used in the configs."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 1
    if isinstance(value, str):
        return value + "x"
    if value is None:
        return 7
    if isinstance(value, tuple):
        return (*value, ("extra", 1))
    raise AssertionError(f"no perturbation for {value!r}")


CONFIG_OBJECTS = [
    cfg.DataConfig(),
    cfg.PretrainConfig(method="swav"),
    cfg.ContinueConfig(criterion="e2mc", coefficients=(("ent_coeff", 10.0),)),
    cfg.ProtocolConfig("linear", (("fractions", (1, 10)),)),
]


@pytest.mark.parametrize("obj", CONFIG_OBJECTS, ids=lambda o: type(o).__name__)
def test_hash_changes_with_every_field(obj):
    base = cfg.config_hash(obj)
    for f in dataclasses.fields(obj):
        changed = dataclasses.replace(obj, **{f.name: _perturbed(getattr(obj, f.name))})
        assert cfg.config_hash(changed) != base, f"hash ignores field {f.name}"


def test_hash_is_sha256_of_the_documented_canonical_json():
    obj = cfg.PretrainConfig(method="vicreg", epochs=3, options=(("expander_dim", 64),))
    # written out by hand: field names sorted, tuples as lists, compact separators
    doc = {
        "schema": cfg.SCHEMA_VERSION,
        "config": {
            "backbone": "small_cnn", "batch_size": 256, "epochs": 3, "max_steps": None,
            "method": "vicreg", "options": [["expander_dim", 64]], "seed": 0,
        },
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    assert cfg.config_hash(obj) == hashlib.sha256(text.encode()).hexdigest()[:16]


def test_hash_ignores_mapping_order_and_tuple_vs_list():
    assert cfg.config_hash({"a": 1, "b": (1, 2)}) == cfg.config_hash({"b": [1, 2], "a": 1})
    assert cfg.config_hash({"a": 1}) != cfg.config_hash({"a": 1.5})


def test_hash_is_stable_across_processes():
    code = (
        "from paper import config as c; from paper.plan import build_plan;"
        "print(c.config_hash(c.full()), build_plan(c.full()).cells[-1].unit.key)"
    )
    outs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, check=True)
        outs.add(res.stdout.strip())
    here = f"{cfg.config_hash(cfg.full())} {build_plan(cfg.full()).cells[-1].unit.key}"
    assert outs == {here}


def test_bad_values_are_rejected():
    with pytest.raises(ValueError, match="finite"):
        cfg.config_hash({"lr": float("nan")})
    with pytest.raises(TypeError, match="set"):
        cfg.config_hash({"x": {1, 2}})
    with pytest.raises(ValueError, match="length"):
        cfg.config_hash({}, length=4)


def test_unit_key_depends_on_dependencies_not_on_label():
    a = Unit("pretrain", {"epochs": 1})
    a2 = Unit("pretrain", {"epochs": 2})
    b = Unit("continue", {"criterion": "e2mc"}, deps=(a,), label="one")
    assert b.key == Unit("continue", {"criterion": "e2mc"}, deps=(a,), label="two").key
    assert b.key != Unit("continue", {"criterion": "e2mc"}, deps=(a2,)).key
    with pytest.raises(ValueError, match="kind"):
        Unit("train", {})


def test_every_experiment_field_reaches_the_units():
    """Changing a data, base or budget setting renames the units that depend on it."""
    exp = cfg.quick()
    before = {u.key for u in build_plan(exp).units()}
    changes = [
        dataclasses.replace(exp, data=dataclasses.replace(exp.data, val_fraction=0.2)),
        dataclasses.replace(exp, data=dataclasses.replace(exp.data, root="/elsewhere")),
        dataclasses.replace(exp, bases=(dataclasses.replace(exp.bases[0], epochs=9),
                                        *exp.bases[1:])),
        dataclasses.replace(exp, continue_epochs=2),
        dataclasses.replace(exp, continue_max_steps=5),
        dataclasses.replace(exp, seeds=(1,)),
    ]
    for changed in changes:
        after = {u.key for u in build_plan(changed).units()}
        assert after != before
    # a change of one base leaves the other bases' units alone
    swav_only = {u.key for u in build_plan(changes[2]).units() if "swav" in u.label}
    assert swav_only <= before


def test_shared_rows_are_one_unit():
    plan = build_plan(cfg.full())
    units = plan.units()
    assert len({u.key for u in units}) == len(units)
    continued = [u for u in units if u.kind == "continue"]
    # 3 bases x 2 rows x 3 seeds (Table 1) + 4 more SwAV criteria x 3 (Table 2) + 2 ablations x 3
    # + 2 more SimSiam E2MC coefficients x 3 (sensitivity; its other rows are Table 1's units)
    assert len(continued) == 18 + 12 + 6 + 6
    e2mc = [u for u in continued if u.config["method"] == "swav"
            and u.config["criterion"] == "e2mc" and u.config["seed"] == 0]
    coeffs = sorted((u.config["options"]["ent_coeff"], u.config["options"]["cov_coeff"])
                    for u in e2mc)
    assert coeffs == [(0.0, 1.0), (10.0, 0.0), (10.0, 1.0)]


def test_recorded_default_root_reads_from_the_environment(monkeypatch, tmp_path):
    """Units keep Debian's folder in their names; the images come from wherever the user's
    ENTROPYLIB_FASHION_MNIST says, so committed results are found on every machine."""
    monkeypatch.setenv("ENTROPYLIB_FASHION_MNIST", str(tmp_path))
    assert cfg.full().data.root == "/usr/share/datasets/fashion-mnist"
    assert cfg.data_folder(cfg.FASHION_MNIST_ROOT) == str(tmp_path)
    assert cfg.data_folder("/elsewhere") == "/elsewhere"
    monkeypatch.delenv("ENTROPYLIB_FASHION_MNIST")
    assert cfg.data_folder(cfg.FASHION_MNIST_ROOT) == cfg.FASHION_MNIST_ROOT
