"""How a table's runs were made, read from their params and tags: recipe, epochs, model, precision,
overrides, commit."""

from __future__ import annotations

from harness.reports.made_with import made_with_text, precision_description, recipe_description
from harness.training.recipes import RECIPES
from tests.reports.run_records import run_record, synthetic_runs


def logged(name: str, **changes: str) -> dict[str, str]:
    """A registered recipe's params as the tracker logs them, with `changes`."""
    from harness.records.tracker import param_value

    params = {f"recipe.{k}": param_value(v) for k, v in RECIPES.get(name).as_dict().items()}
    return params | {f"recipe.{k}": v for k, v in changes.items()}


def test_the_recipe_is_named_with_the_fields_that_differ() -> None:
    assert recipe_description(logged("quick")) == "quick"
    assert recipe_description(logged("quick", epochs="2")) == "quick with epochs=2"
    assert recipe_description(logged("cifar-lt", warmup_epochs="5.0")) == "cifar-lt"  # 5 == 5.0
    assert recipe_description({}) == "not recorded"


def test_precision_says_what_ran_when_the_recipe_left_it_open() -> None:
    assert precision_description({"recipe.precision": "auto", "ran.precision": "bf16"}) == "auto (ran bf16)"
    assert precision_description({"recipe.precision": "fp32", "ran.precision": "fp32"}) == "fp32"


def test_every_value_of_a_mixed_table_is_named() -> None:
    runs = synthetic_runs(
        [
            run_record("ce", 0, acc=0.5, recipe="quick", epochs=12),
            run_record("la", 0, acc=0.5, recipe="quick", epochs=2),
        ]
    )
    text = made_with_text(runs)
    assert text.startswith("Runs made with: cifar10-lt: recipe quick, epochs 2 / 12, model resnet32, precision fp32.")
    assert text.endswith("Overrides: none. ltbench commit 0123456789ab.")
    assert made_with_text(runs.iloc[0:0]) == ""
