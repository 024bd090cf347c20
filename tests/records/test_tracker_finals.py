"""A run completed twice (its trial retrained after its files were deleted) holds each final metric once."""

from __future__ import annotations

import json
from pathlib import Path

from harness.experiment.suite import build_suite
from harness.records.mlflow_names import final_metric, logged_value
from harness.records.storage import Storage
from harness.records.tracker import Tracker
from harness.records.tracking_uri import default_tracking_uri

RESULT = {
    "metrics": {"test_acc": 0.5, "val_acc": 0.25},
    "per_class_acc": {"test": [0.5, 0.5]},
    "train_counts": [3, 2],
    "class_counts": [3, 2],
}


def test_completing_a_run_again_logs_its_final_metrics_once(tiny_suite: Path, tmp_path: Path) -> None:
    cfg = build_suite(str(tiny_suite)).trials[0]
    files = Storage.open(tmp_path / "trials").trial(cfg.key)
    files.local_dir.mkdir(parents=True)
    (files.local_dir / "result.json").write_text(json.dumps(RESULT))
    tracker = Tracker(default_tracking_uri(tmp_path), "tiny", tmp_path)
    run_id = tracker.open_run(cfg)
    tracker.record_result(run_id, files)
    assert tracker.open_run(cfg) == run_id  # the rerun resumes into the same run
    tracker.record_result(run_id, files)
    for name, value in RESULT["metrics"].items():
        history = tracker.client.get_metric_history(run_id, final_metric(name))
        assert [m.value for m in history] == [logged_value(name, value, percent=True)]
