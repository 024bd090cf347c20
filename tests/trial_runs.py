"""Running one trial in a test the way a worker does: its method class and backbone resolved from the plan."""

from __future__ import annotations

from typing import Any

from harness.core.trial import TrialConfig
from harness.experiment.plan import stage1_config
from harness.plugins.loading import load_methods
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
