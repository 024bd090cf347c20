"""MiSLAS and its mixup stage one: the losses against a transcription of the official code on fixed inputs,
mixed batches replayed from the epoch generator, and stage two as the official code runs it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.api import mixup
from harness.experiment.plan import make_plan
from harness.experiment.suite import build_suite
from harness.records.storage import Storage
from methods.mislas import WeightScaledLinear, label_aware_smoothing, label_aware_smoothing_loss
from tests.conftest import write_tiny_suite
from tests.trial_runs import train

COUNTS = [500.0, 120.0, 30.0, 5.0]


def official_label_aware_smoothing(cls_num_list, smooth_head, smooth_tail, x, target):
    """MiSLAS methods.py LabelAwareSmoothing (shape 'concave'), transcribed with numpy and torch as there."""
    n_1, n_K = max(cls_num_list), min(cls_num_list)
    smooth = smooth_tail + (smooth_head - smooth_tail) * np.sin(
        (np.array(cls_num_list) - n_K) * np.pi / (2 * (n_1 - n_K))
    )
    smooth = torch.from_numpy(smooth).float()
    smoothing = smooth[target]
    confidence = 1.0 - smoothing
    logprobs = F.log_softmax(x, dim=-1)
    nll_loss = -logprobs.gather(dim=-1, index=target.unsqueeze(1)).squeeze(1)
    smooth_loss = -logprobs.mean(dim=-1)
    return (confidence * nll_loss + smoothing * smooth_loss).mean()


def test_label_aware_smoothing_matches_the_official_formula() -> None:
    generator = torch.Generator().manual_seed(3)
    logits, targets = torch.randn(16, 4, generator=generator) * 3, torch.randint(0, 4, (16,), generator=generator)
    smoothing = label_aware_smoothing(torch.tensor(COUNTS), 0.4, 0.1)
    assert smoothing[0].item() == pytest.approx(0.4) and smoothing[-1].item() == pytest.approx(0.1)
    ours = label_aware_smoothing_loss(logits, targets, smoothing)
    official = official_label_aware_smoothing(COUNTS, 0.4, 0.1, logits, targets)
    assert ours.item() == pytest.approx(official.item(), rel=1e-6)


def test_equal_counts_smooth_every_class_by_the_head_value() -> None:
    assert torch.allclose(label_aware_smoothing(torch.tensor([7.0, 7.0]), 0.3, 0.0), torch.tensor([0.3, 0.3]))


def test_weight_scaling_starts_as_the_classifier() -> None:
    linear = torch.nn.Linear(3, 4)
    head = WeightScaledLinear(linear)
    z = torch.randn(5, 3)
    assert torch.equal(head(z), linear(z))
    with torch.no_grad():
        head.scales.mul_(2)
    assert torch.allclose(head(z), 2 * linear(z)) and torch.allclose(head.effective_weight(), 2 * linear.weight)


def test_mixup_mixes_images_and_targets_as_the_official_criterion() -> None:
    images = torch.arange(24.0).view(4, 1, 2, 3)
    targets = torch.tensor([0, 1, 2, 3])
    mixed = mixup(images, targets, 1.0, torch.Generator().manual_seed(0))
    order = mixed.targets_b  # targets are 0..3, so y[p] is the permutation itself
    assert sorted(order.tolist()) == [0, 1, 2, 3] and 0 < mixed.lam < 1
    assert torch.allclose(mixed.images, mixed.lam * images + (1 - mixed.lam) * images[order])
    logits = torch.randn(4, 4, generator=torch.Generator().manual_seed(1))
    # official mixup_criterion: lam * criterion(pred, y_a) + (1 - lam) * criterion(pred, y_b)
    expected = mixed.lam * F.cross_entropy(logits, targets) + (1 - mixed.lam) * F.cross_entropy(logits, order)
    assert mixed.loss(F.cross_entropy, logits).item() == pytest.approx(expected.item(), rel=1e-6)
    again = mixup(images, targets, 1.0, torch.Generator().manual_seed(0))
    assert again.lam == mixed.lam and torch.equal(again.targets_b, order)  # a resumed epoch replays its draws
    assert mixup(images, targets, 0.0, torch.Generator().manual_seed(0)).lam == 1.0  # α = 0: no mixing


@pytest.mark.integration
def test_mislas_trains_stage_two_on_the_mixup_backbone_as_the_official_code(
    tmp_path: Path, fake_fashion_root: Path
) -> None:
    suite = build_suite(
        str(write_tiny_suite(tmp_path / "s.yaml", fake_fashion_root)),
        ["methods=[mislas]", "seeds=[0]", "method_params.mislas.epochs=3"],
    )
    plan = make_plan(suite.trials)
    assert [t.method for t in plan.trials] == ["mixup", "mislas"]  # its backbone is a mixup trial
    results = {cfg.method: train(cfg, Storage.open(tmp_path / "trials")) for cfg in plan.trials}
    stage2 = results["mislas"]["effective"]["stage2"]
    # the classifier at lr × lr_factor, the weight scaling at lr; cosine from the full lr; BN statistics shift
    assert stage2["group_lrs"] == [pytest.approx(0.02), pytest.approx(0.1)]
    assert stage2["bn"] == "train" and stage2["sampler"] == "class-aware" and stage2["augment"]
    assert results["mislas"]["history"][0]["lr"] == pytest.approx(0.1)
    assert all(math.isfinite(h["train_loss"]) for h in results["mislas"]["history"])
    assert 1 <= results["mislas"]["metrics"]["chosen_epoch"] <= 3
