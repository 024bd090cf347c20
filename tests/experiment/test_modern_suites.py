"""quick-modern and cifar-lt-2023: today's baselines beside ce and la, without changing quick's or cifar-lt's cost."""

from __future__ import annotations

import json

import pytest

from harness.core.errors import LtbenchError
from harness.experiment.plan import make_plan
from harness.experiment.suite import build_suite

NEW_METHODS = {"mixup", "mislas", "glmc", "paco", "ride", "sade"}


def test_quick_modern_runs_the_new_methods_beside_ce_and_la_on_the_quick_recipe() -> None:
    modern, quick = build_suite("quick-modern"), build_suite("quick")
    assert {t.method for t in modern.trials} == {"ce", "la"} | NEW_METHODS
    assert {t.dataset for t in modern.trials} == {"fashion-mnist-lt"}
    assert {t.recipe["epochs"] for t in modern.trials} == {t.recipe["epochs"] for t in quick.trials} == {12}
    # its ce and la rows are the quick suite's trials (same keys), so they are trained once for both
    shared = {t.key for t in modern.trials if t.method in ("ce", "la")}
    assert shared <= {t.key for t in quick.trials}
    assert not NEW_METHODS & {t.method for t in quick.trials}  # quick (make run) keeps its cost


def test_cifar_lt_2023_is_the_cifar_lt_grid_for_the_new_methods() -> None:
    new, old = build_suite("cifar-lt-2023"), build_suite("cifar-lt")
    assert {t.method for t in new.trials} == NEW_METHODS and not NEW_METHODS & {t.method for t in old.trials}

    def cell(t):
        return (t.dataset, t.imbalance_ratio, t.seed, t.model, json.dumps(t.recipe), json.dumps(t.data))

    assert {cell(t) for t in new.trials} == {cell(t) for t in old.trials}  # same protocol: rows side by side
    plan = make_plan(new.trials)
    assert {plan.backbones[k].method for k in plan.backbones} == {"mixup"}  # mislas on the grid's mixup rows
    assert len(plan.backbones) == 2 * 4 * 3


@pytest.mark.parametrize(("method", "says"), [("paco", "trains on extra views"), ("sade", "unlabeled images")])
def test_a_method_that_needs_views_on_a_file_dataset_is_refused_before_anything_runs(method: str, says: str) -> None:
    with pytest.raises(LtbenchError, match=f"method '{method}' .*{says}.*not for imagenet-lt"):
        build_suite("imagenet-lt", [f"methods=[ce,{method}]"])
    assert build_suite("imagenet-lt", ["methods=[ce]"]).trials  # the plain method on the same data is fine
