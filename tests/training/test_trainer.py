"""The trial loop: real learning signal, checkpoint resume with identical results, divergence detection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.core.trial import TrialConfig
from harness.experiment.suite import build_suite
from harness.records.artifacts import CHECKPOINT_FILE, RESULT_FILE
from harness.records.storage import Storage
from harness.training.trainer import TrialDiverged
from tests.conftest import write_tiny_suite
from tests.trial_runs import train


def tiny_trial(tmp_path: Path, root: Path, **changes) -> TrialConfig:
    return build_suite(str(write_tiny_suite(tmp_path / "s.yaml", root, **changes))).trials[0]


class Crash(Exception):
    pass


def crash_after(epoch: int):
    def report(row: dict) -> None:
        if row["epoch"] == epoch:
            raise Crash

    return report


def test_resume_gives_the_same_metrics_as_an_uninterrupted_run(tmp_path: Path, fake_fashion_root: Path) -> None:
    cfg = tiny_trial(tmp_path, fake_fashion_root, recipe={"base": "quick", "epochs": 3, "batch_size": 32})
    straight = train(cfg, Storage.open(tmp_path / "a"))

    with pytest.raises(Crash):
        train(cfg, Storage.open(tmp_path / "b"), report=crash_after(2))
    assert (tmp_path / "b" / cfg.key / CHECKPOINT_FILE).is_file() and not (
        tmp_path / "b" / cfg.key / RESULT_FILE
    ).exists()
    epochs_after_resume = []
    resumed = train(cfg, Storage.open(tmp_path / "b"), report=lambda row: epochs_after_resume.append(row["epoch"]))

    assert epochs_after_resume == [3]  # epochs 1-2 came from the checkpoint
    # NaN buckets compare unequal as floats, so compare the recorded form
    assert json.dumps(resumed["metrics"], sort_keys=True) == json.dumps(straight["metrics"], sort_keys=True)
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in straight["history"]]


def test_finished_trial_is_not_retrained(tmp_path: Path, fake_fashion_root: Path) -> None:
    cfg = tiny_trial(tmp_path, fake_fashion_root)
    first = train(cfg, Storage.open(tmp_path / "t"))
    calls = []
    again = train(cfg, Storage.open(tmp_path / "t"), report=calls.append)
    assert calls == [] and json.dumps(again, sort_keys=True) == json.dumps(first, sort_keys=True)


def test_result_records_manifest_and_buckets(tmp_path: Path, fake_fashion_root: Path) -> None:
    cfg = tiny_trial(tmp_path, fake_fashion_root)
    result = train(cfg, Storage.open(tmp_path / "t"))
    manifest = json.loads((tmp_path / "t" / cfg.key / "manifest.json").read_text())
    # training is the profile less what validation had to take from LT images (none here: spare images exist)
    assert len(manifest["train_indices"]) + sum(manifest["val_from_lt"]) == sum(manifest["class_counts"])
    assert not set(manifest["train_indices"]) & set(manifest["val_indices"])
    assert result["train_counts"] == result["class_counts"]
    assert result["effective"]["precision"] == "fp32"  # what "auto"/"fp32" resolved to, recorded
    m = result["metrics"]
    assert (m["test_many_classes"], m["test_medium_classes"], m["test_few_classes"]) == (0, 3, 7)  # 30 25 21 | 19 ..
    assert len(result["per_class_acc"]["test"]) == 10
    assert result["versions"]["torch"] and result["device"].startswith("cpu")


def test_different_seeds_differ(tmp_path: Path, fake_fashion_root: Path) -> None:
    cfg = tiny_trial(tmp_path, fake_fashion_root)
    other = TrialConfig.from_dict({**cfg.as_dict(), "seed": cfg.seed + 1})
    a, b = train(cfg, Storage.open(tmp_path / "a")), train(other, Storage.open(tmp_path / "b"))
    assert [h["train_loss"] for h in a["history"]] != [h["train_loss"] for h in b["history"]]


def test_divergence_is_reported(tmp_path: Path, fake_fashion_root: Path) -> None:
    cfg = tiny_trial(tmp_path, fake_fashion_root, recipe={"base": "quick", "epochs": 2, "lr": 1e12})
    with pytest.raises(TrialDiverged, match="training loss became"):
        train(cfg, Storage.open(tmp_path / "t"))


def test_best_validation_epoch_is_kept_scored_and_resumed(tmp_path: Path, fake_fashion_root: Path) -> None:
    """`keep: best-val` (Kang's run_networks.py): validation after every epoch, the best (earliest of ties) is the
    model the trial reports and stage two loads, the same epoch after a resume."""
    recipe = {"base": "quick", "epochs": 5, "batch_size": 32, "eval_every": 5, "lr": 0.5, "keep": "best-val"}
    cfg = tiny_trial(tmp_path, fake_fashion_root, recipe=recipe)
    straight = train(cfg, Storage.open(tmp_path / "a"))
    scores = [row["val_mean_class_acc"] for row in straight["history"]]
    assert len(scores) == 5  # every epoch scored on validation, though test is evaluated every 5th only
    kept = scores.index(max(scores)) + 1
    assert kept < 5  # at lr 0.5 the fake data's validation peaks before the end: the kept model is not the last
    assert straight["effective"]["kept_epoch"] == kept == straight["metrics"]["kept_epoch"]
    assert straight["metrics"]["val_mean_class_acc"] == scores[kept - 1]  # the kept weights were evaluated
    checkpoint = torch.load(tmp_path / "a" / cfg.key / CHECKPOINT_FILE, weights_only=False)
    assert checkpoint["kept"]["epoch"] == kept and checkpoint["kept"]["weights"] is None  # restored into "model"

    with pytest.raises(Crash):
        train(cfg, Storage.open(tmp_path / "b"), report=crash_after(3))
    resumed = train(cfg, Storage.open(tmp_path / "b"))
    assert json.dumps(resumed["metrics"], sort_keys=True) == json.dumps(straight["metrics"], sort_keys=True)
    assert resumed["effective"]["kept_epoch"] == kept


def test_last_epoch_is_kept_by_default(tmp_path: Path, fake_fashion_root: Path) -> None:
    cfg = tiny_trial(tmp_path, fake_fashion_root)
    result = train(cfg, Storage.open(tmp_path / "t"))
    assert result["effective"]["kept_epoch"] == 2 and "val_mean_class_acc" in result["history"][0]
