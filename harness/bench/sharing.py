"""(c) Stage sharing: backbone epochs a suite trains with shared stage-1 backbones against retraining one
backbone per decoupled method.

The epoch counts come from `harness.experiment.plan.epoch_budget`, which owns the execution plan; this section only
reports them. Without that module the section says so instead of inventing a figure.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from harness.bench.common import Figure, Section

TARGET = 1.9
SUITES = ("quick", "cifar-lt")
TITLE = "(c) stage sharing: backbone epochs, retrain per method / shared"


def _budget(epoch_budget: Any, suite: str) -> Any:
    """Call `epoch_budget` with what it takes: a suite's trials (a parameter named `trials`) or its name."""
    params = list(inspect.signature(epoch_budget).parameters)
    if params and params[0] == "trials":
        from harness.experiment.suite import build_suite

        return epoch_budget(build_suite(suite).trials)
    return epoch_budget(suite)


def measure(suites: tuple[str, ...] = SUITES) -> Section:
    section = Section("stage_sharing", TITLE)
    try:
        plan = importlib.import_module("harness.experiment.plan")
    except ModuleNotFoundError as e:
        present = e.name != "harness.experiment.plan"
        section.status = (
            f"unavailable: harness.experiment.plan failed to import ({e})"
            if present
            else ("unavailable: harness.experiment.plan not present")
        )
        return section
    epoch_budget = getattr(plan, "epoch_budget", None)
    if epoch_budget is None:
        section.status = "unavailable: harness.experiment.plan has no epoch_budget"
        return section
    for suite in suites:
        budget = _budget(epoch_budget, suite)
        shared, retrain = int(budget.shared_epochs), int(budget.retrain_epochs)
        section.figures.append(
            Figure(
                case=f"suite {suite}",
                value=shared,
                baseline=retrain,
                ratio=retrain / max(shared, 1),
                unit="epochs",
                value_name="backbone epochs with shared stage-1 backbones",
                baseline_name="backbone epochs retraining per method",
                target=TARGET,
            )
        )
    return section
