"""The hooks a method may own: its training step, state kept across steps (checkpointed), its own network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from harness.api import LTModel, Method, TrainingBatch, mixup
from harness.core.trial import TrialConfig
from harness.experiment.suite import build_suite
from harness.records.storage import Storage
from harness.training.trainer import TrialSetup, run_trial
from tests.conftest import write_tiny_suite
from tests.trial_runs import assert_resumes_exactly


class RunningCountsCE(Method):
    """Cross-entropy weighted by the inverse of the class counts seen so far: its loss depends on state kept
    across steps, so a resume that lost the counts would train differently. It also mixes every batch."""

    name = "ce"  # the trial's method name; the class is handed to run_trial directly, never registered
    description = "test method"

    def __init__(self, params: Any, context: Any) -> None:
        super().__init__(params, context)
        self.seen = torch.zeros(context.num_classes, dtype=torch.float64)
        self.steps = 0

    def training_step(self, batch: TrainingBatch) -> torch.Tensor:
        self.seen += torch.bincount(batch.targets.cpu(), minlength=len(self.seen)).double()
        self.steps += 1
        weight = (self.seen.sum() / self.seen.clamp(min=1)).float().to(batch.images.device)
        mixed = mixup(batch.images, batch.targets, 1.0, batch.generator)
        return mixed.loss(lambda z, y: F.cross_entropy(z, y, weight=weight), batch.logits(mixed.images))

    def state_dict(self) -> dict[str, Any]:
        return {"seen": self.seen.clone(), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seen, self.steps = state["seen"].clone(), state["steps"]


def tiny_trial(tmp_path: Path, root: Path) -> TrialConfig:
    recipe = {"base": "quick", "epochs": 3, "batch_size": 32, "eval_every": 1}
    return build_suite(str(write_tiny_suite(tmp_path / "s.yaml", root, recipe=recipe))).trials[0]


def test_a_method_that_owns_its_step_with_state_resumes_exactly(tmp_path: Path, fake_fashion_root: Path) -> None:
    cfg = tiny_trial(tmp_path, fake_fashion_root)
    assert_resumes_exactly(cfg, RunningCountsCE, tmp_path)


def test_the_owned_step_is_what_trains(tmp_path: Path, fake_fashion_root: Path) -> None:
    """The same trial trained by the engine's step and by a mixing step of the method's own: they differ."""
    cfg = tiny_trial(tmp_path, fake_fashion_root)
    own = run_trial(cfg, Storage.open(tmp_path / "own"), RunningCountsCE)
    plain = run_trial(cfg, Storage.open(tmp_path / "plain"), type("PlainCE", (Method,), {"name": "ce"}))
    assert [h["train_loss"] for h in own["history"]] != [h["train_loss"] for h in plain["history"]]


class WideHead(Method):
    name = "ce"
    description = "test method"

    def build_model(self, model: LTModel) -> LTModel:
        own = LTModel(torch.nn.Sequential(model.backbone, torch.nn.Linear(model.feature_dim, 7)), 7, 10)
        own.head = torch.nn.Linear(7, 10)
        return own


def test_a_method_builds_its_own_network(tmp_path: Path, fake_fashion_root: Path) -> None:
    setup = TrialSetup.build(tiny_trial(tmp_path, fake_fashion_root), WideHead)
    assert setup.model.feature_dim == 7 and setup.model.head.in_features == 7
    assert setup.model.features(torch.zeros(2, 1, 28, 28)).shape == (2, 7)


def test_a_network_that_is_not_features_plus_head_is_refused(tmp_path: Path, fake_fashion_root: Path) -> None:
    bare = type("Bare", (Method,), {"name": "ce", "build_model": lambda self, model: torch.nn.Linear(1, 1)})
    with pytest.raises(TypeError, match="build_model must return an LTModel"):
        TrialSetup.build(tiny_trial(tmp_path, fake_fashion_root), bare)


class TwoViewsCE(Method):
    """Cross-entropy on the standard view, a flipped-and-cropped view and the class-balanced paired batch: a
    resume that replayed any draw of the views or of the second stream differently would train differently."""

    name = "ce"
    description = "test method"
    views = ("crop:2+flip", "flip:1")
    paired_sampler = "class-balanced"
    batches: list[TrainingBatch] = []

    def training_step(self, batch: TrainingBatch) -> torch.Tensor:
        type(self).batches.append(batch)
        assert batch.paired is not None
        loss = F.cross_entropy(batch.logits(), batch.targets)
        loss = loss + sum(F.cross_entropy(batch.logits(view), batch.targets) for view in batch.views)
        return loss + F.cross_entropy(batch.logits(batch.paired.images), batch.paired.targets)


def test_views_and_a_paired_stream_resume_exactly(tmp_path: Path, fake_fashion_root: Path) -> None:
    cfg = tiny_trial(tmp_path, fake_fashion_root)
    assert_resumes_exactly(cfg, TwoViewsCE, tmp_path)


def test_the_trial_hands_its_method_the_views_and_a_class_balanced_paired_batch(
    tmp_path: Path, fake_fashion_root: Path
) -> None:
    """What each view holds is tested on the pipeline (tests/data/test_pipeline.py); here, that a trial passes
    them and the second sampler's batch to the method's step."""
    TwoViewsCE.batches = []
    run_trial(tiny_trial(tmp_path, fake_fashion_root), Storage.open(tmp_path / "a"), TwoViewsCE)
    batch = TwoViewsCE.batches[0]
    first, mirrored = batch.views
    assert first.shape == mirrored.shape == batch.images.shape == batch.paired.images.shape == (32, 1, 28, 28)
    assert len(batch.paired.views) == 2 and not torch.equal(mirrored, batch.images)
    # the second stream is the class-balanced sampler's, the first the instance sampler's (the training counts'
    # max/min is ~4 here): its rarest class comes more often and its classes far more evenly
    classes = int(torch.cat([b.targets for b in TwoViewsCE.batches]).max()) + 1
    paired = torch.bincount(torch.cat([b.paired.targets for b in TwoViewsCE.batches]), minlength=classes)
    main = torch.bincount(torch.cat([b.targets for b in TwoViewsCE.batches]), minlength=classes)
    assert paired.min() > main.min() and paired.max() / paired.min() < 0.6 * main.max() / main.min()


def test_a_method_asking_for_views_must_own_its_step() -> None:
    from harness.plugins.method import register_method

    with pytest.raises(TypeError, match="only its own training_step sees"):
        register_method(type("Viewer", (Method,), {"name": "viewer-test", "description": "x", "views": ("flip",)}))
