"""Helpers for the report tests (no tests here): synthetic runs frames and one shared tiny real run.

`synthetic_runs` builds a runs frame exactly as `harness.reports.runs.frame_from_runs` shapes it, so
aggregation, tables and claims are tested on known numbers. `tiny_real_results` trains a real two-seed `ce`
suite on fake Fashion-MNIST once per test session, logged to a real MLflow store, and hands every report
test the same results directory.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from harness.reports.runs import COLUMNS, METRIC_COLUMNS, setting_name
from tests.conftest import write_tiny_suite
from tests.fakes import write_fashion_mnist


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:12]


def run_record(
    method: str,
    seed: int,
    dataset: str = "cifar10-lt",
    ratio: float | None = 100.0,
    status: str = "FINISHED",
    reason: str = "",
    params: str = "",
    model: str = "resnet32",
    recipe: str = "cifar-lt",
    epochs: int = 200,
    suite: str = "synthetic",
    acc: float | None = None,
    config: dict[str, str] | None = None,
    **metrics: float,
) -> dict[str, Any]:
    """One run row. `acc` sets every test/val metric at once; keyword metrics (`test_few_acc=0.1`,
    `tau1/test_top1=...`) override single ones. A FAILED or RUNNING run has no metrics unless given."""
    logged = config or {}  # the run's configuration as MLflow holds it (the runs frame's `config`)
    context = _key(dataset, ratio, model, recipe, epochs, logged)
    config = _key(context, method, params)
    row: dict[str, Any] = {
        "suite": suite,
        "trial_key": _key(config, seed),
        "run_id": "run-" + _key(config, seed, suite),
        "status": status,
        "reason": reason,
        "dataset": dataset,
        "imbalance_ratio": np.nan if ratio is None else float(ratio),
        "method": method,
        "method_params": params,
        "setting": setting_name(method, params),
        "seed": seed,
        "model": model,
        "recipe": recipe,
        "epochs": epochs,
        "precision": "fp32",
        "overrides": "none",
        "commit": "0123456789abcdef",
        "config_key": config,
        "context_key": context,
        "start_time": 1_000 + seed,
        "end_time": 2_000 + seed,
        "chosen_tau": np.nan,
        "kept_epoch": np.nan,
        "variants": "",
        "config": logged,
    }
    for column in METRIC_COLUMNS:
        row[column] = np.nan if acc is None else acc
    variants = set()
    for name, value in metrics.items():
        column = name.replace("__", "/")
        if "/" in column:
            variants.add(column.split("/")[0])
        row[column] = value
    row["variants"] = ",".join(sorted(variants))
    return row


def synthetic_runs(records: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(records)
    for column in COLUMNS:
        if column not in frame:
            frame[column] = np.nan
    extra = sorted(c for c in frame.columns if c not in COLUMNS)
    return frame[COLUMNS + extra]


# -- one tiny real run per session ----------------------------------------------------------------------
_REAL: dict[str, Path] = {}
FAILURE_REASON = "injected by the report tests: CUDA out of memory"


def tiny_real_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(results dir, suite YAML) of a tiny Fashion-MNIST-LT suite: seeds 0 and 1 of `ce` trained for real
    (two epochs on fake images) and logged to MLflow; seed 2 logged as FAILED with FAILURE_REASON.

    The trials go through the driver's own path (Tracker.open_run, the trainer's per-epoch reports into
    Tracker.log_epoch, Tracker.finish / Tracker.fail), the calls the Ray Tune callback makes, without
    starting Ray: that start-up alone would take a third of the report tests' time budget, and the Ray path
    is covered by tests/test_end_to_end.py.
    """
    if "results" not in _REAL:
        from harness.experiment.suite import build_suite
        from harness.records.storage import Storage
        from harness.records.tracker import Tracker
        from harness.records.tracking_uri import default_tracking_uri
        from tests.trial_runs import train

        base = tmp_path_factory.mktemp("tiny-real")
        data = base / "fashion"
        write_fashion_mnist(data, per_class=40, test_per_class=5)
        suite_file = write_tiny_suite(base / "tiny.yaml", data, seeds=[0, 1, 2])
        results = base / "results"
        results.mkdir()
        suite = build_suite(str(suite_file))
        tracker = Tracker(default_tracking_uri(results), suite.name, results)
        for cfg in suite.trials:
            run_id = tracker.open_run(cfg)
            if cfg.seed == 2:
                tracker.fail(run_id, FAILURE_REASON)
                continue
            storage = Storage.open(results / "trials")
            train(cfg, storage, report=lambda row, run_id=run_id: tracker.log_epoch(run_id, row))
            tracker.record_result(run_id, storage.trial(cfg.key))
        _REAL["results"], _REAL["suite"] = results, suite_file
    return _REAL["results"], _REAL["suite"]


def record_suite_run(results: Path, suite_file: Path, overrides: list[str]) -> None:
    """What `ltbench run SUITE --set ...` leaves in `results`, without starting Ray: the configuration record,
    one MLflow run per trial tagged with the overrides, each trial trained for real and its files logged."""
    from harness.experiment.suite import build_suite
    from harness.records.storage import Storage
    from harness.records.suite_configurations import remember_configuration
    from harness.records.tracker import Tracker
    from harness.records.tracking_uri import default_tracking_uri
    from tests.trial_runs import train

    suite = build_suite(str(suite_file), overrides)
    results.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(default_tracking_uri(results), suite.name, results, overrides=suite.overrides)
    remember_configuration(results, suite.name, suite.overrides, suite.trials)
    storage = Storage.open(results / "trials")
    for cfg in suite.trials:
        run_id = tracker.open_run(cfg)
        train(cfg, storage, report=lambda row, run_id=run_id: tracker.log_epoch(run_id, row))
        tracker.record_result(run_id, storage.trial(cfg.key))
