"""PaCo: the loss against a transcription of the official PaCoLoss on fixed inputs, the queue, the momentum key
encoder, and the method's state across a checkpoint."""

from __future__ import annotations

import copy
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.api import LtbenchError, LTModel, MethodContext
from harness.experiment.suite import build_suite
from methods.paco import KeyEncoder, PaCo, PaCoModel, paco_loss
from tests.conftest import write_tiny_suite
from tests.trial_runs import assert_resumes_exactly

COUNTS = torch.tensor([40.0, 12.0, 5.0, 2.0], dtype=torch.float64)


def official_paco_loss(features, labels, sup_logits, weight, *, alpha, beta, gamma, temperature, K, num_classes):
    """PaCo/LT/losses.py PaCoLoss.forward (dvlab-research/Parametric-Contrastive-Learning @ fe56535), transcribed
    line for line on the CPU: `weight` is its cal_weight_for_classes (counts / sum), supt = 1 and
    base_temperature = temperature as paco_cifar.py builds it."""
    batch_size = (features.shape[0] - K) // 2
    labels = labels.contiguous().view(-1, 1)
    mask = torch.eq(labels[:batch_size], labels.T).float()
    anchor_dot_contrast = torch.div(torch.matmul(features[:batch_size], features.T), temperature)
    anchor_dot_contrast = torch.cat(((sup_logits + torch.log(weight + 1e-9)) / 1.0, anchor_dot_contrast), dim=1)
    logits_max, _ = torch.max(anchor_dot_contrast, dim=1, keepdim=True)
    logits = anchor_dot_contrast - logits_max.detach()
    logits_mask = torch.scatter(torch.ones_like(mask), 1, torch.arange(batch_size).view(-1, 1), 0)
    mask = mask * logits_mask
    one_hot_label = F.one_hot(
        labels[:batch_size,].view(
            -1,
        ),
        num_classes=num_classes,
    ).to(torch.float32)
    mask = torch.cat((one_hot_label * beta, mask * alpha), dim=1)
    logits_mask = torch.cat((torch.ones(batch_size, num_classes), gamma * logits_mask), dim=1)
    exp_logits = torch.exp(logits) * logits_mask
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True) + 1e-12)
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1)
    loss = -(temperature / temperature) * mean_log_prob_pos
    return loss.mean()


def fixed_inputs(batch=6, queue=8, dim=5, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    features = F.normalize(torch.randn(2 * batch + queue, dim, generator=g), dim=1)
    targets = torch.randint(0, classes, (batch,), generator=g)
    labels = torch.cat((targets, targets, torch.randint(0, classes, (queue,), generator=g)))
    sup_logits = torch.randn(batch, classes, generator=g) * 2
    return features, labels, sup_logits


@pytest.mark.parametrize(
    "alpha, beta, gamma, temperature", [(0.01, 1.0, 1.0, 0.05), (0.5, 0.3, 2.0, 0.2), (1.0, 0.0, 0.5, 0.07)]
)
def test_loss_matches_the_official_paco_loss(alpha, beta, gamma, temperature) -> None:
    features, labels, sup_logits = fixed_inputs()
    weight = (COUNTS / COUNTS.sum()).float().view(1, -1)
    official = official_paco_loss(
        features, labels, sup_logits, weight, alpha=alpha, beta=beta, gamma=gamma, temperature=temperature, K=8,
        num_classes=4,
    )  # fmt: skip
    ours = paco_loss(
        features, labels, sup_logits, torch.log(weight[0] + 1e-9), alpha=alpha, beta=beta, gamma=gamma,
        temperature=temperature,
    )  # fmt: skip
    assert ours.item() == pytest.approx(official.item(), rel=1e-6)


def test_without_sample_terms_the_loss_is_the_logit_adjusted_cross_entropy() -> None:
    """α = γ = 0 leaves the class centres alone: cross-entropy on z + log π (the balanced softmax). (τ = 1 keeps
    the official 1e-12 in the log negligible: at τ = 0.05 the row's maximum is the self-similarity 1/τ.)"""
    features, labels, sup_logits = fixed_inputs(seed=1)
    log_prior = torch.log(COUNTS / COUNTS.sum()).float()
    loss = paco_loss(features, labels, sup_logits, log_prior, alpha=0.0, beta=1.0, gamma=0.0, temperature=1.0)
    expected = F.cross_entropy(sup_logits + log_prior, labels[:6])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


# -- the method on a tiny model ------------------------------------------------------------------------------
class TinyBackbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x))).mean(dim=(2, 3))


def tiny_method(**params) -> tuple[PaCo, PaCoModel]:
    torch.manual_seed(0)
    method = PaCo(PaCo.Params(**{"queue_size": 8, "dim": 3, **params}), MethodContext(4, COUNTS))
    model = method.build_model(LTModel(TinyBackbone(), 6, 4))
    return method, model


def tiny_batch(model: nn.Module, generator: torch.Generator, size: int = 4, seed: int = 0) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    query, key = torch.randn(size, 1, 5, 5, generator=g), torch.randn(size, 1, 5, 5, generator=g)
    targets = torch.randint(0, 4, (size,), generator=g)
    return SimpleNamespace(
        model=model, images=query, targets=targets, views=(query, key), generator=generator, epoch=0,
        num_epochs=1, autocast=nullcontext,
    )  # fmt: skip


def test_build_model_adds_the_projection_and_keeps_the_key_encoder_out_of_the_model() -> None:
    method, model = tiny_method()
    assert (
        isinstance(model, LTModel) and model.head.out_features == 4 and model(torch.randn(2, 1, 5, 5)).shape == (2, 4)
    )
    assert model.projection[-1].out_features == 3 and model.features(torch.randn(2, 1, 5, 5)).shape == (2, 6)
    method.training_step(tiny_batch(model, torch.Generator().manual_seed(0)))
    in_model = {id(p) for p in model.parameters()}
    assert method.key_encoder is not None
    assert not any(id(p) in in_model or p.requires_grad for p in method.key_encoder.parameters())


def test_the_queue_starts_full_of_the_official_random_keys_and_takes_each_batch_in_turn() -> None:
    method, model = tiny_method()
    generator = torch.Generator().manual_seed(5)
    method.training_step(tiny_batch(model, generator, seed=1))
    assert method.queue is not None and method.queue.shape == (8, 3) and method.queue_labels.shape == (8,)
    # the official initial queue: Gaussian keys normalised along the queue axis (dim 0), random labels
    g = torch.Generator().manual_seed(5)
    initial, initial_labels = F.normalize(torch.randn(8, 3, generator=g), dim=0), torch.randint(0, 4, (8,), generator=g)
    assert torch.equal(method.queue[4:], initial[4:]) and torch.equal(method.queue_labels[4:], initial_labels[4:])
    assert method.queue_ptr == 4
    first = tiny_batch(model, generator, seed=1)
    assert torch.equal(method.queue_labels[:4], first.targets)  # the first batch's keys went into slots 0-3
    assert torch.allclose(method.queue[:4].norm(dim=1), torch.ones(4))
    second = tiny_batch(model, generator, seed=2)
    method.training_step(second)
    assert method.queue_ptr == 0 and torch.equal(method.queue_labels[4:], second.targets)


def test_a_queue_that_is_no_multiple_of_the_batch_wraps_around() -> None:
    method, _ = tiny_method()
    method.queue, method.queue_labels, method.queue_ptr = torch.zeros(8, 3), torch.zeros(8, dtype=torch.long), 6
    method.enqueue(torch.ones(3, 3), torch.tensor([1, 2, 3]))
    assert method.queue_labels.tolist() == [3, 0, 0, 0, 0, 0, 1, 2] and method.queue_ptr == 1


def test_a_batch_larger_than_the_queue_is_refused() -> None:
    method, model = tiny_method(queue_size=3)
    with pytest.raises(LtbenchError, match="queue_size"):
        method.training_step(tiny_batch(model, torch.Generator().manual_seed(0)))


def test_the_key_encoder_follows_the_model_by_momentum() -> None:
    method, model = tiny_method(momentum=0.9)
    method.training_step(tiny_batch(model, torch.Generator().manual_seed(0)))
    key = method.key_encoder
    assert key is not None
    for pk, pq in zip(key.parameters(), [*model.backbone.parameters(), *model.projection.parameters()], strict=True):
        assert torch.allclose(pk, pq, rtol=1e-6, atol=1e-7)  # the copy, after one update m·θ + (1-m)·θ
    before = copy.deepcopy(key)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    key.momentum_update(model, 0.9)
    queries = [*model.backbone.parameters(), *model.projection.parameters()]
    for pk, p0, pq in zip(key.parameters(), before.parameters(), queries, strict=True):
        assert torch.allclose(pk, p0 * 0.9 + pq * (1 - 0.9))  # the official param_k * m + param_q * (1 - m)


def test_state_dict_restores_the_queue_and_the_key_encoder_exactly() -> None:
    method, model = tiny_method()
    generator = torch.Generator().manual_seed(0)
    for seed in (1, 2, 3):
        method.training_step(tiny_batch(model, generator, seed=seed))
    state = method.state_dict()
    assert set(state) == {"key_encoder", "queue", "queue_labels", "queue_ptr"} and state["queue_ptr"] == 4
    resumed, _ = tiny_method()
    resumed.load_state_dict(copy.deepcopy(state))
    assert resumed.state_dict().keys() == state.keys()  # a checkpoint before the first step keeps it
    twin = copy.deepcopy(model)
    a = method.training_step(tiny_batch(model, generator, seed=4))
    b = resumed.training_step(tiny_batch(twin, generator, seed=4))
    assert torch.equal(a, b)
    assert torch.equal(method.queue, resumed.queue) and torch.equal(method.queue_labels, resumed.queue_labels)
    for x, y in zip(method.key_encoder.state_dict().values(), resumed.key_encoder.state_dict().values(), strict=True):
        assert torch.equal(x, y)


def test_the_loss_trains_the_classifier_and_the_projection() -> None:
    method, model = tiny_method()
    loss = method.training_step(tiny_batch(model, torch.Generator().manual_seed(0)))
    loss.backward()
    assert model.head.weight.grad is not None and model.projection[0].weight.grad is not None
    assert isinstance(method.key_encoder, KeyEncoder)


def test_params_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        PaCo.Params(temperature=0)
    with pytest.raises(ValueError):
        PaCo.Params(momentum=1.0)


class TinyPaCo(PaCo):
    """PaCo as a trial of the fake Fashion-MNIST suite runs it (the trial's method is named ce; this class is
    handed to run_trial, never registered), its views made of the geometric ops only, so the test does not
    depend on the AutoAugment and colour ops; the queue and key encoder are PaCo's own."""

    name = "ce"
    views = ("crop:4+flip", "crop:2+flip:1")


def test_an_interrupted_paco_trial_resumes_exactly(tmp_path: Path, fake_fashion_root: Path) -> None:
    """The queue, its pointer and the key encoder go into every checkpoint: a trial stopped after epoch 2 and
    resumed trains exactly as one that ran straight through."""
    recipe = {"base": "quick", "epochs": 3, "batch_size": 32, "eval_every": 1}
    cfg = build_suite(str(write_tiny_suite(tmp_path / "s.yaml", fake_fashion_root, recipe=recipe))).trials[0]
    assert_resumes_exactly(cfg, TinyPaCo, tmp_path)
