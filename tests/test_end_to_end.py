"""Two trials through Ray Tune into MLflow and a leaderboard, then a rerun that trains nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from harness.suite import build_suite
from harness.tracking import TRIAL_KEY_TAG, Tracker, default_tracking_uri


def ltbench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_two_trials_through_ray_tune_into_mlflow(tmp_path: Path, tiny_suite: Path) -> None:
    results = tmp_path / "results"
    done = ltbench("run", str(tiny_suite), "--results-dir", str(results), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 trials, 0 already finished, 2 run, 0 failed" in done.stdout

    suite = build_suite(str(tiny_suite))
    tracker = Tracker(default_tracking_uri(results), "tiny", results)
    runs = tracker.runs()
    assert sorted(r.data.tags[TRIAL_KEY_TAG] for r in runs) == sorted(t.key for t in suite.trials)
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.params["dataset"] == "fashion-mnist-lt" and run.data.params["recipe.epochs"] == "2"
        assert run.data.tags["ltbench.git_commit"] and run.data.tags["ltbench.version.torch"]
        assert run.data.tags["ltbench.device"].startswith("cpu")
        assert [m.step for m in tracker.client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]
        assert 0 <= run.data.metrics["final_test_top1"] <= 1
        artifacts = {a.path for a in tracker.client.list_artifacts(run.info.run_id)}
        assert {"config.json", "result.json", "manifest.json", "per_class_acc.csv"} <= artifacts

    board = pd.read_csv(results / "tiny" / "leaderboard.csv")
    assert len(board) == 1 and board.loc[0, "n"] == 2 and board.loc[0, "method"] == "ce"
    assert "| fashion-mnist-lt | 4 | ce |" in (results / "tiny" / "leaderboard.md").read_text()

    again = ltbench("run", str(tiny_suite), "--results-dir", str(results), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 trials, 2 already finished, 0 run" in again.stdout
    assert len(tracker.runs()) == 2

    report = ltbench("report", str(tiny_suite), "--results-dir", str(results), cwd=tmp_path)
    assert report.returncode == 0 and "| fashion-mnist-lt | 4 | ce |" in report.stdout
