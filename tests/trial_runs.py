"""Running one trial in a test the way a worker does: its method class and backbone resolved from the plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.core.trial import TrialConfig
from harness.experiment.plan import stage1_config
from harness.plugins.loading import load_methods
from harness.plugins.method import Method
from harness.records.storage import Storage
from harness.training.trainer import TrialSetup, run_trial


def train(cfg: TrialConfig, storage: Storage, **kwargs: Any) -> dict[str, Any]:
    """`run_trial` with what the driver would hand the worker: the method class and the backbone's key."""
    backbone = stage1_config(cfg)
    return run_trial(
        cfg, storage, load_methods().get(cfg.method), backbone.key if backbone is not None else None, **kwargs
    )


def setup_of(cfg: TrialConfig) -> TrialSetup:
    return TrialSetup.build(cfg, load_methods().get(cfg.method))


class Interrupted(Exception):
    """Raised from a trial's report after an epoch's checkpoint, as a killed worker leaves the trial."""


def assert_resumes_exactly(
    cfg: TrialConfig, method: type[Method], root: Path, straight: dict[str, Any] | None = None, stop_after: int = 2
) -> dict[str, Any]:
    """Train `cfg` with `method` straight through (or take `straight`, such a run's result), and again in another
    store, stopped after epoch `stop_after` and resumed from its checkpoint: the per-epoch losses and the final
    metrics must be equal. Returns the straight run's result."""
    if straight is None:
        straight = run_trial(cfg, Storage.open(root / "straight"), method)

    def stop(row: dict[str, Any]) -> None:
        if row["epoch"] == stop_after:
            raise Interrupted

    with pytest.raises(Interrupted):
        run_trial(cfg, Storage.open(root / "resumed"), method, report=stop)
    resumed = run_trial(cfg, Storage.open(root / "resumed"), method)
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in straight["history"]]
    assert json.dumps(resumed["metrics"], sort_keys=True) == json.dumps(straight["metrics"], sort_keys=True)
    return straight
