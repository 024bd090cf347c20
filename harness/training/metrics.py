"""Long-tail metrics: top-1, mean per-class accuracy, and accuracy by shot bucket.

Bucket accuracy is the mean of the per-class accuracies of the classes in the bucket (Kang et al.'s
`shot_acc`), with the bucket fixed by each class's long-tail training count. An empty bucket is NaN, never
0: CIFAR-10-LT at r <= 100 has no few-shot class, and a 0 there would read as total failure.
"""

from __future__ import annotations

import numpy as np

from harness.data.profile import BUCKETS, bucket_of


def per_class_accuracy(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Accuracy of each class on the evaluation set; NaN for a class with no evaluation images."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    totals = np.bincount(labels, minlength=num_classes).astype(float)
    hits = np.bincount(labels[predictions == labels], minlength=num_classes).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, hits / totals, np.nan)


def classification_metrics(
    predictions: np.ndarray, labels: np.ndarray, class_counts: list[int]
) -> dict[str, float | int | list[float]]:
    """All the numbers a trial reports for one evaluation set.

    `class_counts` are the long-tail training counts that define the buckets.
    """
    num_classes = len(class_counts)
    per_class = per_class_accuracy(predictions, labels, num_classes)
    buckets = np.array([bucket_of(n) for n in class_counts])
    out: dict[str, float | int | list[float]] = {
        "top1": float(np.mean(np.asarray(predictions) == np.asarray(labels))),
        "mean_class_acc": _nanmean(per_class),
    }
    for bucket in BUCKETS:
        members = per_class[buckets == bucket]
        out[f"{bucket}_acc"] = _nanmean(members)
        out[f"{bucket}_classes"] = int(len(members))
    out["per_class_acc"] = [float(a) for a in per_class]
    return out


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")
