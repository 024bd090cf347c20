"""The training loop every trial shares: one explicit step, the epoch over a sampler's indices, and evaluation.

`training_step` is the whole of one update: forward under the precision, the loss on float32 scores,
backward, the optimiser step, the caller's `after_step` (a projection), and the learning-rate schedule's step.
It is one function of a `Learner` (what is updated and how) and a batch, so a method can replace it and the
engine can capture it. End-to-end training (`harness.training.trainer`) and stage two on a frozen backbone
(`harness.training.decoupled`) both run `train_epoch` with it, each with its own loss.

Randomness per epoch (sampling order, augmentation) comes from a generator seeded by (seed, epoch), so a
resumed trial replays exactly the epochs an uninterrupted one would run, and on CPU gives equal metrics.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from harness.data import LTData
from harness.training.metrics import classification_metrics
from harness.training.precision import FP32, Precision

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ScoreFn = Callable[[torch.Tensor], torch.Tensor]
EVAL_BATCH = 512


class TrainBatches(Protocol):
    """A source of training batches: images (or features) and labels for given sample indices."""

    def train_batches(
        self, indices: torch.Tensor, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


class EvalBatches(Protocol):
    def eval_batches(self, batch_size: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]: ...


@dataclass
class Learner:
    """What one training step updates, and how: the model, its loss, optimiser, per-step lr schedule, the
    forward pass's precision, and an optional `after_step` (e.g. a max-norm projection)."""

    model: nn.Module
    loss: LossFn
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    precision: Precision = FP32
    after_step: Callable[[], None] | None = None


StepFn = Callable[[Learner, torch.Tensor, torch.Tensor], torch.Tensor]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def training_step(learner: Learner, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """One update; returns the batch's mean loss, detached and left on the device (no host sync). The loss
    sees float32 scores, so a method's loss arithmetic never runs in bf16 (`.float()` is a no-op in fp32)."""
    with learner.precision.autocast():
        logits = learner.model(images)
    return apply_update(learner, learner.loss(logits.float(), targets))


def apply_update(learner: Learner, loss: torch.Tensor) -> torch.Tensor:
    """The update half of a step, from a batch's loss: backward, the optimiser step, `after_step`, the lr
    schedule's step. A method that owns its step (`Method.training_step`) computes the loss; this does the rest,
    so every step updates the same way. Returns the loss, detached and left on the device."""
    learner.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    learner.optimizer.step()
    if learner.after_step is not None:
        learner.after_step()
    learner.scheduler.step()
    return loss.detach()


def epoch_steps(
    learner: Learner,
    batches: TrainBatches,
    indices: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    step: StepFn = training_step,
) -> Generator[None, None, float]:
    """`train_epoch` one step at a time: yields after every step, returns the epoch's mean loss per image.
    A group of trials in one process (`harness.training.group`) interleaves its trials' steps through it."""
    learner.model.train()
    total = torch.zeros((), device=next(learner.model.parameters()).device)
    seen = 0
    for images, targets in batches.train_batches(indices, batch_size, generator):
        total += step(learner, images, targets) * len(targets)
        seen += len(targets)
        yield
    return float(total) / max(seen, 1)


def run_to_end(steps: Generator[None, None, Any]) -> Any:
    """Drive a step generator to its end and return what it returns."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def train_epoch(
    learner: Learner,
    batches: TrainBatches,
    indices: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    step: StepFn = training_step,
) -> float:
    """One pass over `indices`, a `step` per batch; the loss is summed on the device and read once at the end
    of the epoch, so no step waits for the device. Returns the mean training loss per image."""
    return run_to_end(epoch_steps(learner, batches, indices, batch_size, generator, step))


@torch.inference_mode()
def predict(
    model: nn.Module, score: ScoreFn, batches: EvalBatches, precision: Precision = FP32
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and true labels of every image of `batches`; `score` maps logits to the scores whose argmax
    is the prediction (a method's `predict`)."""
    model.eval()
    preds, labels = [], []
    for images, targets in batches.eval_batches(EVAL_BATCH):
        with precision.autocast():
            logits = model(images)
        preds.append(score(logits.float()).argmax(1))
        labels.append(targets)
    return torch.cat(preds).cpu().numpy(), torch.cat(labels).cpu().numpy()


def evaluate(
    model: nn.Module, score: ScoreFn, data: LTData, splits: dict[str, Any], precision: Precision = FP32
) -> dict[str, dict[str, Any]]:
    """Each split's classification metrics (top-1, mean per-class, shot buckets, per-class accuracy)."""
    return {
        name: classification_metrics(*predict(model, score, batches, precision), data.class_counts)
        for name, batches in splits.items()
    }


def scalar_metrics(evaluation: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Flatten {'val': {...}, 'test': {...}} to 'val_top1', 'test_many_acc', ... (lists dropped)."""
    return {
        f"{split}_{name}": value
        for split, metrics in evaluation.items()
        for name, value in metrics.items()
        if not isinstance(value, list)
    }
