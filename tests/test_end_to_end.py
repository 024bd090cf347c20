"""Trials through Ray Tune into MLflow and a leaderboard, then a rerun that trains nothing.

The suite has `ce` and `tau-norm` at two seeds: the two `ce` trials are also the shared stage-1 backbones of
the `tau-norm` trials, which run on the frozen backbones once those have finished (in the same Tune run).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.experiment.suite import build_suite
from harness.records.suite_configurations import recorded_configurations
from harness.records.tracker import TRIAL_KEY_TAG, Tracker
from harness.records.tracking_uri import default_tracking_uri
from tests.conftest import write_tiny_suite

pytestmark = pytest.mark.integration  # Ray Tune and MLflow: `make test-unit` leaves it out


def ltbench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_trials_through_ray_tune_into_mlflow(tmp_path: Path, fake_fashion_root: Path) -> None:
    results = tmp_path / "results"
    tiny_suite = write_tiny_suite(tmp_path / "tiny.yaml", fake_fashion_root, methods=["ce", "tau-norm"])
    done = ltbench("run", str(tiny_suite), "--results-dir", str(results), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "4 trials, 0 already finished, 4 run, 0 failed" in done.stdout
    # one progress count over all trials (2 backbones, then 2 tau-norm heads), Tune's own output silent
    assert "] fashion-mnist-lt-r4-tau-norm-s" in done.stdout and "[4/4] " in done.stdout
    assert "[1/2]" not in done.stdout and "progress: 4/4 trials" in done.stdout
    assert "Configuration for experiment" not in done.stdout + done.stderr
    assert "tensorboard" not in (done.stdout + done.stderr).lower()
    assert "warning: fashion-mnist-lt r=4: no many-shot class" in done.stderr  # 40 down to 10 images

    suite = build_suite(str(tiny_suite))
    tracker = Tracker(default_tracking_uri(results), "tiny", results)
    runs = tracker.runs()
    assert sorted(r.data.tags[TRIAL_KEY_TAG] for r in runs) == sorted(t.key for t in suite.trials)
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.params["dataset"] == "fashion-mnist-lt" and run.data.params["recipe.epochs"] == "2"
        assert run.data.tags["ltbench.git_commit"] and run.data.tags["ltbench.version.torch"]
        assert run.data.tags["ltbench.device"].startswith("cpu")
        assert run.data.tags["ltbench.overrides"] == "none"  # the run's --set, stated beside every table
        assert 0 <= run.data.metrics["final/test_top1"] <= 100  # percent
        artifacts = {a.path for a in tracker.client.list_artifacts(run.info.run_id)}
        assert {"config.json", "result.json", "manifest.json", "per_class_acc.csv", "analysis.npz"} <= artifacts
        if run.data.params["method"] == "ce":
            assert [m.step for m in tracker.client.get_metric_history(run.info.run_id, "curves/train_loss")] == [1, 2]
        else:  # tau-norm: τ* chosen on validation, τ = 1 logged as a variant
            assert 0 <= run.data.metrics["final/chosen_tau"] <= 2
            assert 0 <= run.data.metrics["final/tau1_test_mean_class_acc"] <= 100

    (recorded,) = recorded_configurations(results, "tiny")  # what `report` finds the runs by
    assert recorded.overrides == [] and sorted(t.key for t in recorded.trials) == sorted(t.key for t in suite.trials)
    board = pd.read_csv(results / "tiny" / "leaderboard.csv", comment="#")
    assert sorted(board.method) == ["ce", "tau-norm"] and list(board.n) == [2, 2]
    assert "| fashion-mnist-lt | 4 | ce |" in (results / "tiny" / "leaderboard.md").read_text()
    # MLflow holds the runs: Tune writes none of its own per-trial logs (CSV, JSON, TensorBoard) beside them
    tune_files = {f.name for f in (results / "ray").rglob("*") if f.is_file()}
    assert any(name.startswith("experiment_state") for name in tune_files), sorted(tune_files)[:20]  # Tune's own
    assert not {"progress.csv", "result.json", "params.json"} & tune_files, sorted(tune_files)[:20]
    assert not any(name.startswith("events.out.tfevents") for name in tune_files)

    backbone = next(t for t in suite.trials if t.method == "ce")
    checkpoint = results / "trials" / backbone.key / "checkpoint.pt"
    stamp = checkpoint.stat().st_mtime_ns
    again = ltbench("run", str(tiny_suite), "--results-dir", str(results), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 trials, 4 already finished, 0 run" in again.stdout
    assert len(tracker.runs()) == 4
    assert checkpoint.stat().st_mtime_ns == stamp  # the shared backbone was not retrained

    report = ltbench("report", str(tiny_suite), "--results-dir", str(results), cwd=tmp_path)
    assert report.returncode == 0 and "| fashion-mnist-lt | 4 | ce |" in report.stdout
    assert "reported: the run with no --set (4 trials, last run " in report.stdout
