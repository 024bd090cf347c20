"""Transductive adaptation after training (SADE's test-time aggregation): which split it reads, what it
records, that it sees no labels and replays exactly, and that a multi-expert trial still resumes exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from harness.core.trial import TrialConfig
from harness.data.base import ArraySplit
from harness.data.pipeline import TensorBatches
from harness.experiment.suite import build_suite
from harness.records.storage import Storage
from harness.training.test_time import UnlabeledImages
from harness.training.trainer import run_trial
from methods.ride import RIDE
from methods.sade import SADE
from tests.conftest import write_tiny_suite
from tests.trial_runs import assert_resumes_exactly


def trial(tmp_path: Path, root: Path, method: str, params: dict[str, Any] | None = None) -> TrialConfig:
    recipe = {"base": "quick", "epochs": 2, "batch_size": 32, "eval_every": 1}
    suite = write_tiny_suite(
        tmp_path / f"{method}.yaml", root, recipe=recipe, methods=[method], method_params={method: params or {}}
    )
    return build_suite(str(suite)).trials[0]


@pytest.mark.parametrize("split", ["test", "val"])
def test_sade_learns_its_weights_on_the_chosen_split_and_records_it(
    tmp_path: Path, fake_fashion_root: Path, split: str
) -> None:
    cfg = trial(tmp_path, fake_fashion_root, "sade", {"aggregate_on": split, "tt_epochs": 2})
    result = run_trial(cfg, Storage.open(tmp_path / "store"), SADE)
    weights = [result["metrics"][f"aggregation_weight_{e}"] for e in (1, 2, 3)]
    assert sum(weights) == pytest.approx(1.0, abs=1e-5) and weights != [pytest.approx(1 / 3)] * 3
    assert result["effective"]["transductive"] == split


def test_no_adaptation_for_aggregate_on_none_and_for_other_methods(tmp_path: Path, fake_fashion_root: Path) -> None:
    cfg = trial(tmp_path, fake_fashion_root, "sade", {"aggregate_on": "none"})
    result = run_trial(cfg, Storage.open(tmp_path / "store"), SADE)
    assert "transductive" not in result["effective"] and "aggregation_weight_1" not in result["metrics"]


def test_views_carry_no_labels_and_replay_exactly() -> None:
    images = torch.randint(0, 256, (10, 1, 8, 8), dtype=torch.uint8).numpy()
    split = ArraySplit(images, torch.arange(10).numpy())
    data = type("Data", (), {"mean": (0.5,), "std": (0.25,)})()
    batches = TensorBatches(split, data, torch.device("cpu"), 0, False)
    unlabeled = UnlabeledImages(batches, seed=3, split="test")
    first = list(unlabeled.view_pairs(4, "crop:2+flip", epoch=0))
    again = list(unlabeled.view_pairs(4, "crop:2+flip", epoch=0))
    assert [len(pair) for pair in first] == [2, 2, 2] and [v.shape[0] for v, _ in first] == [4, 4, 2]
    assert all(torch.equal(a, b) for pa, pb in zip(first, again, strict=True) for a, b in zip(pa, pb, strict=True))
    assert not all(torch.equal(v1, v2) for v1, v2 in first)  # two views of an image differ
    assert not hasattr(unlabeled, "labels")


@pytest.mark.parametrize("method_class", [RIDE, SADE])
def test_a_multi_expert_trial_resumes_exactly(tmp_path: Path, fake_fashion_root: Path, method_class: type) -> None:
    recipe = {"base": "quick", "epochs": 3, "batch_size": 32, "eval_every": 1}
    name = method_class.name
    cfg = build_suite(
        str(write_tiny_suite(tmp_path / "s.yaml", fake_fashion_root, recipe=recipe, methods=[name]))
    ).trials[0]
    assert_resumes_exactly(cfg, method_class, tmp_path)
