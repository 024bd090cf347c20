"""Today's baselines (quick-modern's methods) train through Ray Tune into MLflow for an epoch on fake data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.experiment.suite import build_suite
from harness.records.tracker import TRIAL_KEY_TAG, Tracker
from harness.records.tracking_uri import default_tracking_uri
from tests.conftest import write_tiny_suite

pytestmark = pytest.mark.integration  # Ray Tune and MLflow

MODERN = ["mixup", "mislas", "glmc", "paco", "ride", "ride-ea", "sade"]


def test_each_new_method_trains_an_epoch_through_ray_tune(tmp_path: Path, fake_fashion_root: Path) -> None:
    results = tmp_path / "results"
    suite_file = write_tiny_suite(
        tmp_path / "tiny.yaml",
        fake_fashion_root,
        methods=MODERN,
        seeds=[0],
        recipe={"base": "quick", "epochs": 1, "batch_size": 32, "eval_every": 1},
        method_params={"mislas": {"epochs": 1}, "ride-ea": {"epochs": 1, "batch_size": 32}},
    )
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(suite_file), "--results-dir", str(results)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    suite = build_suite(str(suite_file))
    runs = Tracker(default_tracking_uri(results), "tiny", results).runs()
    assert sorted(r.data.tags[TRIAL_KEY_TAG] for r in runs) == sorted(t.key for t in suite.trials)
    by_method = {r.data.params["method"]: r for r in runs}
    assert set(by_method) == set(MODERN)
    for run in runs:
        assert run.info.status == "FINISHED" and 0 <= run.data.metrics["final/test_top1"] <= 100  # percent
    assert by_method["mislas"].data.metrics["final/chosen_epoch"] == 1  # stage two's one epoch, kept on val
    sade = by_method["sade"].data
    assert sade.params["ran.transductive"] == "test"  # recorded for the reports' ‡ marker and table notes
    weights = [sade.metrics[f"final/aggregation_weight_{e}"] for e in (1, 2, 3)]
    assert abs(sum(weights) - 1) < 1e-4
