"""Several trials in one process (`harness.training.group`): each trial exactly as it is alone, on CPU.

Every comparison is exact: the metrics as recorded, the per-epoch losses, and every tensor of the checkpoint
(model, optimiser, schedule, RNG states). Only wall-clock fields (`time`, `epoch_seconds`,
`train_images_per_s`) and the attempts' node names may differ between two runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from harness.core.trial import TrialConfig
from harness.experiment.suite import build_suite
from harness.plugins.loading import load_methods
from harness.records.artifacts import CHECKPOINT_FILE, RESULT_FILE
from harness.records.storage import Storage
from harness.training.group import run_group
from harness.training.trainer import trial_steps
from tests.conftest import write_tiny_suite
from tests.trial_runs import train

CLOCK_FIELDS = ("time", "epoch_seconds", "train_images_per_s")


class Crash(Exception):
    pass


def three_trials(tmp_path: Path, root: Path, epochs: int = 3) -> list[TrialConfig]:
    """ce, la and ldam-drw (a deferred re-weighting whose loss changes mid-run), each on another seed."""
    suite = write_tiny_suite(
        tmp_path / "s.yaml",
        root,
        methods=["ce", "la", "ldam-drw"],
        seeds=[0, 1, 2],
        recipe={"base": "quick", "epochs": epochs, "batch_size": 32, "eval_every": 1},
    )
    trials = build_suite(str(suite)).trials
    chosen = (("ce", 0), ("la", 1), ("ldam-drw", 2))
    return [next(t for t in trials if t.method == m and t.seed == s) for m, s in chosen]


def group(trials: list[TrialConfig], storage: Storage, crash_at: int | None = None) -> tuple[dict, dict]:
    """Train `trials` as one group; returns (results, failures) by key. `crash_at` makes every trial's
    report raise after that epoch's checkpoint, as a killed process would leave it."""

    def report(row: dict[str, Any]) -> None:
        if row["epoch"] == crash_at:
            raise Crash

    methods = load_methods()
    steps = {t.key: trial_steps(t, storage, methods.get(t.method), report=report) for t in trials}
    results, failures = {}, {}
    run_group(steps, results.__setitem__, failures.__setitem__)
    return results, failures


def recorded(result: dict[str, Any]) -> str:
    return json.dumps(result["metrics"], sort_keys=True)  # NaN buckets compare unequal as floats


def losses(result: dict[str, Any]) -> list[float]:
    return [row["train_loss"] for row in result["history"]]


def assert_same_state(a: Any, b: Any, where: str = "checkpoint") -> None:
    """Equal nested checkpoint contents, tensors bit for bit, ignoring wall-clock fields and node names."""
    if isinstance(a, dict):
        keys = {k for k in a if k not in CLOCK_FIELDS and k != "node"}
        assert keys == {k for k in b if k not in CLOCK_FIELDS and k != "node"}, where
        for k in keys:
            assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    elif isinstance(a, float) and a != a:
        assert b != b, where
    else:
        assert a == b, where


def checkpoint(storage_dir: Path, key: str) -> dict[str, Any]:
    return torch.load(storage_dir / key / CHECKPOINT_FILE, map_location="cpu", weights_only=False)


def test_a_group_gives_each_trial_exactly_its_solo_metrics_and_checkpoint(
    tmp_path: Path, fake_fashion_root: Path
) -> None:
    trials = three_trials(tmp_path, fake_fashion_root)
    grouped, failures = group(trials, Storage.open(tmp_path / "group"))
    assert failures == {} and set(grouped) == {t.key for t in trials}
    for cfg in trials:
        alone = train(cfg, Storage.open(tmp_path / "alone"))
        assert recorded(grouped[cfg.key]) == recorded(alone), cfg.method
        assert losses(grouped[cfg.key]) == losses(alone), cfg.method
        assert_same_state(checkpoint(tmp_path / "group", cfg.key), checkpoint(tmp_path / "alone", cfg.key))
    # the trials differ from each other: the comparison above is not of three copies of one run
    assert len({recorded(r) for r in grouped.values()}) == 3


def test_a_group_checkpoint_resumes_alone_and_a_solo_checkpoint_resumes_in_a_group(
    tmp_path: Path, fake_fashion_root: Path
) -> None:
    trials = three_trials(tmp_path, fake_fashion_root)
    straight = {t.key: train(t, Storage.open(tmp_path / "straight")) for t in trials}

    _, failures = group(trials, Storage.open(tmp_path / "g2s"), crash_at=2)  # interrupted as a group
    assert set(failures) == {t.key for t in trials}
    for cfg in trials:
        assert not (tmp_path / "g2s" / cfg.key / RESULT_FILE).exists()
        resumed = train(cfg, Storage.open(tmp_path / "g2s"))  # ... resumed alone
        assert [a["start_epoch"] for a in resumed["attempts"]] == [0, 2]
        assert recorded(resumed) == recorded(straight[cfg.key]) and losses(resumed) == losses(straight[cfg.key])

    for cfg in trials:  # interrupted alone ...
        with pytest.raises(Crash):
            train(cfg, Storage.open(tmp_path / "s2g"), report=lambda row: group_crash(row, 2))
    resumed_group, failures = group(trials, Storage.open(tmp_path / "s2g"))  # ... resumed as a group
    assert failures == {}
    for cfg in trials:
        result = resumed_group[cfg.key]
        assert [a["start_epoch"] for a in result["attempts"]] == [0, 2]
        assert recorded(result) == recorded(straight[cfg.key]) and losses(result) == losses(straight[cfg.key])


def group_crash(row: dict[str, Any], epoch: int) -> None:
    if row["epoch"] == epoch:
        raise Crash


def test_a_trial_that_diverges_in_a_group_fails_alone(tmp_path: Path, fake_fashion_root: Path) -> None:
    trials = three_trials(tmp_path, fake_fashion_root, epochs=2)
    diverging = TrialConfig.from_dict({**trials[1].as_dict(), "recipe": {**trials[1].recipe, "lr": 1e12}})
    members = [trials[0], diverging, trials[2]]
    grouped, failures = group(members, Storage.open(tmp_path / "group"))

    assert set(failures) == {diverging.key} and "training loss became" in str(failures[diverging.key])
    assert set(grouped) == {trials[0].key, trials[2].key}
    for cfg in (trials[0], trials[2]):  # the others are unaffected by the failure beside them
        alone = train(cfg, Storage.open(tmp_path / "alone"))
        assert recorded(grouped[cfg.key]) == recorded(alone) and losses(grouped[cfg.key]) == losses(alone)


@pytest.mark.gpu
def test_a_group_on_cuda_streams_of_its_own_gives_each_trial_its_solo_run(
    tmp_path: Path, fake_fashion_root: Path
) -> None:
    """$LTBENCH_GROUP_STREAMS: each trial of the group steps on its own CUDA stream; its numbers stay its solo
    run's (the same kernels in the same order on each stream: equal, or within 1e-5 where cuDNN differs)."""
    trials = three_trials(tmp_path, fake_fashion_root)
    methods = load_methods()
    storage = Storage.open(tmp_path / "streams")
    steps = {t.key: trial_steps(t, storage, methods.get(t.method)) for t in trials}
    grouped, failures = {}, {}
    run_group(steps, grouped.__setitem__, failures.__setitem__, streams=True)
    assert failures == {}
    for cfg in trials:
        alone = train(cfg, Storage.open(tmp_path / "alone"))
        assert grouped[cfg.key]["effective"]["cuda_stream"] == "own", cfg.method
        assert alone["effective"]["cuda_stream"] == "default", cfg.method
        torch.testing.assert_close(
            torch.tensor(losses(grouped[cfg.key])), torch.tensor(losses(alone)), rtol=1e-5, atol=1e-6
        )
        assert grouped[cfg.key]["metrics"]["test_top1"] == pytest.approx(alone["metrics"]["test_top1"], abs=0.5)
