"""Suites: grid expansion, overrides, trial keys, and the errors for bad input."""

from __future__ import annotations

import pytest

from harness.core.errors import LtbenchError
from harness.experiment.suite import build_suite


def test_quick_suite_grid_and_options() -> None:
    suite = build_suite("quick")
    assert {(t.imbalance_ratio, t.seed) for t in suite.trials} == {(r, s) for r in (100.0, 10.0) for s in (0, 1)}
    assert all(t.data["max_per_class"] == 1000 and t.model == "resnet-small-gray" for t in suite.trials)
    assert len({t.key for t in suite.trials}) == len(suite.trials)


def test_override_changes_recipe_and_key() -> None:
    base = build_suite("quick").trials[0]
    changed = build_suite("quick", ["recipe.epochs=3", "seeds=[0]"]).trials[0]
    assert changed.recipe["epochs"] == 3 and base.recipe["epochs"] != 3
    assert changed.key != base.key


def test_key_ignores_paths_and_resources() -> None:
    base = build_suite("quick").trials[0]
    moved = build_suite("quick", ["data.root=/elsewhere", "resources.cpu=2", "device=cpu"]).trials[0]
    assert moved.key == base.key


def test_cifar_suite_defaults_follow_ldam_drw() -> None:
    trial = build_suite("cifar-lt").trials[0]
    assert trial.model == "resnet32"
    r = trial.recipe
    assert (r["epochs"], r["lr"], r["weight_decay"], r["milestones"], r["step_gamma"]) == (
        200,
        0.1,
        2e-4,
        [160, 180],
        0.01,
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("nosuchkey=1", "unknown suite key 'nosuchkey'"),
        ("recipe.epochz=3", "unknown recipe key 'epochz'"),
        ("data.rooot=/x", "unknown data key 'rooot'"),
        ("methods=[ce, magic]", "unknown method 'magic'; valid methods: balanced-softmax, cb, ce"),
        ("datasets=[cifar11-lt]", "unknown dataset 'cifar11-lt'; valid datasets: cifar10-lt"),
        ("imbalance_ratios=[0.5]", "imbalance ratios must be finite numbers >= 1"),
        ("recipe.epochs=0", "epochs must be a positive integer"),
        ("seeds=[zero]", "seeds must be integers"),
        ("resources.gpu=-1", "resources.gpu must be a finite number >= 0"),
        ("method_params.ce.temperature=2", "unknown hyperparameter of method 'ce' 'temperature'"),
        ("model=resnet1000", "unknown model 'resnet1000'"),
        ("recipe.schedule=linear", "unknown schedule 'linear'"),
        ("no-equals-sign", "--set expects key=value"),
    ],
)
def test_bad_overrides_are_clear(override: str, message: str) -> None:
    with pytest.raises(LtbenchError, match=message.replace("[", r"\[").replace("(", r"\(")):
        build_suite("quick", [override])


def test_unknown_suite_lists_builtins() -> None:
    with pytest.raises(LtbenchError, match="unknown suite 'nope'; valid suites: .*cifar-lt.*quick"):
        build_suite("nope")


def test_data_seed_from_the_trial_seed_varies_the_subset_and_split(tiny_suite) -> None:
    """`data_seed: seed` draws the LT subset and validation split from each trial's seed, so the spread over
    seeds includes the points that the choice of images moves."""
    from harness.data import DATASETS, DataOptions

    suite = build_suite(str(tiny_suite), ["data.data_seed=seed", "data.selection=random"])
    built = {}
    for t in suite.trials:
        options = DataOptions(**t.data).for_seed(t.seed)
        assert options.data_seed == t.seed
        built[t.seed] = DATASETS.get(t.dataset).build(t.imbalance_ratio, options).manifest
    assert built[0]["train_indices"] != built[1]["train_indices"]
    assert built[0]["val_indices"] != built[1]["val_indices"]
    assert built[0]["class_counts"] == built[1]["class_counts"]
    with pytest.raises(LtbenchError, match="data_seed must be an integer in .* or 'seed'"):
        build_suite(str(tiny_suite), ["data.data_seed=trial"])
    with pytest.raises(LtbenchError, match="data_seed"):
        DataOptions(data_seed="seed").resolved_data_seed  # noqa: B018  (an unresolved seed cannot build data)


def test_old_validation_keys_are_rejected_with_the_new_one() -> None:
    with pytest.raises(LtbenchError, match="val_per_class"):
        build_suite("quick", ["data.val_fraction=0.2"])
