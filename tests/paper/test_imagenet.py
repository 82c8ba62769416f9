"""ImageNet recipes: the README lists the generated commands; every recipe's CPU dry-run steps."""

from pathlib import Path

import pytest

from paper.imagenet import recipes

README = Path(recipes.__file__).with_name("README.md")


def test_readme_lists_every_command():
    text = README.read_text()
    for recipe in recipes.RECIPES.values():
        for line in recipes.commands(recipe):
            assert line in text, f"README.md is missing: {line}"


def test_commands_follow_the_reference_settings():
    vicreg = recipes.train_command(recipes.RECIPES["vicreg"], "e2mc")
    assert vicreg[:2] == ["torchrun", "--nproc_per_node=2"]
    joined = " ".join(vicreg)
    assert "--transform sigmoid --ent-coeff 10 --cov-coeff 1" in joined
    simsiam = " ".join(recipes.train_command(recipes.RECIPES["simsiam"], "e2mc"))
    assert "--transform gaussian_cdf --ent-coeff 1 --cov-coeff 25" in simsiam
    control = " ".join(recipes.train_command(recipes.RECIPES["swav800"], "none"))
    assert "--criterion none" in control and "--ent-coeff" not in control
    with pytest.raises(ValueError, match="criterion"):
        recipes.train_command(recipes.RECIPES["vicreg"], "vcreg")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(recipes.RECIPES))
def test_dry_run_takes_one_step(name):
    res = recipes.dry_run(name)
    assert res["weights_moved"]
    assert res["loss"] == res["loss"]  # finite, not NaN
    crops = 8 if recipes.RECIPES[name].method == "swav" else 2
    assert len(res["views"]) == crops
    if name == "vicreg":
        # ResNet-50 (23.5 M) + 2048-8192-8192-8192 expander
        assert res["parameters"] > 170e6
        assert res["optimizer"] == "LARS"


def test_unknown_recipe():
    with pytest.raises(ValueError, match="unknown recipe"):
        recipes.dry_run("byol")


def test_dry_run_of_an_unknown_recipe_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        recipes.main(["--dry-run", "vicreg", "nosuch"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "invalid choice: 'nosuch'" in err and "swav800" in err
    assert "Traceback" not in err
