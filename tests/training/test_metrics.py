"""classification_metrics on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.training.metrics import classification_metrics, per_class_accuracy

# Six classes with training counts in each bucket: many (> 100), medium (20..100), few (< 20).
COUNTS = [500, 101, 100, 20, 19, 5]  # buckets: many, many, medium, medium, few, few


def _case():
    # class: 0 0 0 0 | 1 1 | 2 2 2 | 3 | 4 4 | 5 5 5 5 5
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 3, 4, 4, 5, 5, 5, 5, 5])
    preds = np.array([0, 0, 0, 1, 1, 0, 2, 0, 0, 3, 0, 0, 5, 5, 0, 0, 0])
    # per class: 3/4, 1/2, 1/3, 1/1, 0/2, 2/5
    return preds, labels


def test_hand_computed():
    preds, labels = _case()
    m = classification_metrics(preds, labels, COUNTS)
    per_class = [3 / 4, 1 / 2, 1 / 3, 1.0, 0.0, 2 / 5]
    assert m["top1"] == pytest.approx(8 / 17)
    assert m["mean_class_acc"] == pytest.approx(sum(per_class) / 6)
    # bucket accuracy is the mean of the per-class accuracies, not pooled over images
    assert m["many_acc"] == pytest.approx((3 / 4 + 1 / 2) / 2)  # pooled would be 4/6
    assert m["medium_acc"] == pytest.approx((1 / 3 + 1.0) / 2)  # pooled would be 2/4
    assert m["few_acc"] == pytest.approx((0.0 + 2 / 5) / 2)  # pooled would be 2/7
    assert (m["many_classes"], m["medium_classes"], m["few_classes"]) == (2, 2, 2)
    assert m["per_class_acc"] == pytest.approx(per_class)
    assert isinstance(m["top1"], float)
    assert isinstance(m["many_classes"], int)
    assert all(isinstance(a, float) for a in m["per_class_acc"])


def test_top1_differs_from_mean_class_accuracy():
    # 9 images of class 0 all right, 1 image of class 1 wrong
    labels = np.array([0] * 9 + [1])
    preds = np.zeros(10, dtype=int)
    m = classification_metrics(preds, labels, [200, 10])
    assert m["top1"] == pytest.approx(0.9)
    assert m["mean_class_acc"] == pytest.approx(0.5)
    assert m["many_acc"] == pytest.approx(1.0)
    assert m["few_acc"] == pytest.approx(0.0)
    assert math.isnan(m["medium_acc"])


def test_empty_bucket_is_nan_not_zero():
    # CIFAR-10-LT r=100: no class below 20 training images
    counts = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    labels = np.repeat(np.arange(10), 3)
    preds = labels.copy()
    preds[::3] = (preds[::3] + 1) % 10  # one of three wrong in each class
    m = classification_metrics(preds, labels, counts)
    assert m["few_classes"] == 0
    assert math.isnan(m["few_acc"])
    assert m["many_classes"] == 8
    assert m["medium_classes"] == 2
    assert m["many_acc"] == pytest.approx(2 / 3)
    assert m["medium_acc"] == pytest.approx(2 / 3)
    assert m["top1"] == pytest.approx(2 / 3)


def test_class_absent_from_eval_set_is_nan():
    counts = [300, 50, 10, 5]
    labels = np.array([0, 0, 1, 1, 1, 3])  # class 2 has no evaluation image
    preds = np.array([0, 1, 1, 1, 0, 2])
    m = classification_metrics(preds, labels, counts)
    per_class = m["per_class_acc"]
    assert len(per_class) == 4
    assert per_class[0] == pytest.approx(0.5)
    assert per_class[1] == pytest.approx(2 / 3)
    assert math.isnan(per_class[2])  # absent, not 0 (even though class 2 was predicted once)
    assert per_class[3] == pytest.approx(0.0)
    # absent classes are left out of the means, not counted as 0
    assert m["mean_class_acc"] == pytest.approx((0.5 + 2 / 3 + 0.0) / 3)
    assert m["few_acc"] == pytest.approx(0.0)  # class 3 only; class 2 is NaN and skipped
    assert m["few_classes"] == 2  # the bucket is defined by training counts, not by the eval set
    assert m["top1"] == pytest.approx(3 / 6)


def test_bucket_of_only_absent_classes_is_nan():
    counts = [300, 5]
    labels = np.array([0, 0])
    preds = np.array([0, 1])
    m = classification_metrics(preds, labels, counts)
    assert m["many_acc"] == pytest.approx(0.5)
    assert math.isnan(m["few_acc"])
    assert m["few_classes"] == 1


def test_bucket_boundaries_in_metrics():
    counts = [101, 100, 20, 19]
    labels = np.arange(4)
    preds = np.array([0, 0, 2, 0])  # right for classes 0 and 2 only
    m = classification_metrics(preds, labels, counts)
    assert m["many_acc"] == pytest.approx(1.0)  # class 0 (101)
    assert m["medium_acc"] == pytest.approx(0.5)  # classes 1 (100) and 2 (20)
    assert m["few_acc"] == pytest.approx(0.0)  # class 3 (19)
    assert (m["many_classes"], m["medium_classes"], m["few_classes"]) == (1, 2, 1)


def test_per_class_accuracy_vector():
    acc = per_class_accuracy(np.array([1, 1, 0]), np.array([1, 1, 1]), 3)
    assert acc.shape == (3,)
    assert math.isnan(acc[0])
    assert acc[1] == pytest.approx(2 / 3)
    assert math.isnan(acc[2])


def test_perfect_and_all_wrong():
    labels = np.repeat(np.arange(5), 4)
    counts = [200, 150, 60, 30, 10]
    perfect = classification_metrics(labels, labels, counts)
    wrong = classification_metrics((labels + 1) % 5, labels, counts)
    for key in ("top1", "mean_class_acc", "many_acc", "medium_acc", "few_acc"):
        assert perfect[key] == 1.0
        assert wrong[key] == 0.0
