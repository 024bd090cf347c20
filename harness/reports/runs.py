"""Read a suite's MLflow runs into one tidy pandas frame: a row per run, a column per field."""

from __future__ import annotations

import pandas as pd

from harness.tracking import FAILURE_TAG, TRIAL_KEY_TAG, Tracker

METRICS = ("top1", "mean_class_acc", "many_acc", "medium_acc", "few_acc")
COLUMNS = (
    ["trial_key", "run_id", "status", "reason", "dataset", "imbalance_ratio", "method", "seed"]
    + [f"test_{m}" for m in METRICS]
    + [f"val_{m}" for m in METRICS]
)


def runs_frame(tracker: Tracker) -> pd.DataFrame:
    rows = []
    for run in tracker.runs():
        params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
        ratio = params.get("imbalance_ratio")
        row = {
            "trial_key": tags.get(TRIAL_KEY_TAG),
            "run_id": run.info.run_id,
            "status": run.info.status,
            "reason": tags.get(FAILURE_TAG, ""),
            "dataset": params.get("dataset"),
            "imbalance_ratio": float(ratio) if ratio not in (None, "None") else float("nan"),
            "method": params.get("method"),
            "seed": int(params["seed"]) if "seed" in params else -1,
        }
        for split in ("test", "val"):
            for m in METRICS:
                row[f"{split}_{m}"] = metrics.get(f"final_{split}_{m}", float("nan"))
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)
