"""Transductive adaptation: a method that learns from a split's unlabeled images after training (SADE's
test-time aggregation of its experts), before the final evaluation.

A method says it may do so with `Method.transductive = True`; `Method.unlabeled_split()` names the split
("test", as the paper; "val" as the option that keeps the test set unseen; None: no adaptation in this run) and
`Method.adapt_unlabeled(model, images)` gets that split's images as `UnlabeledImages`: never their labels,
only augmented views of them. The trainer calls `adapt_on_unlabeled` once, right before the final evaluation,
and records the split it read as `effective["transductive"]` (logged as `ran.transductive`), which
`ltbench methods`, the leaderboard and the paper tables show.

Every view's random draws come from a generator seeded from the trial's seed and the adaptation epoch, a
stream of its own (`TEST_TIME_STREAM`), so a rerun adapts exactly as the first run did.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from harness.core.errors import LtbenchError
from harness.data.augment import apply_policy, check_policy
from harness.data.pipeline import TensorBatches
from harness.training.loop import epoch_generator

if TYPE_CHECKING:
    from harness.plugins.method import Method

UNLABELED_SPLITS = ("test", "val")
TEST_TIME_STREAM = 1_000_000  # epoch offset of the adaptation's generators: past any training epoch (MAX_EPOCHS)


class UnlabeledImages:
    """The images of one evaluation split, without labels, as pairs of augmented views (uint8 on the device,
    augmented by an `apply_policy` policy, then normalised as every batch of the trial)."""

    def __init__(self, batches: Any, seed: int, split: str) -> None:
        if not isinstance(batches, TensorBatches):
            raise LtbenchError(
                f"adaptation on unlabeled {split} images needs an in-memory dataset (CIFAR-LT, Fashion-MNIST-LT); "
                "file datasets (ImageNet-LT) are not supported yet"
            )
        self._batches = batches
        self.seed = seed
        self.split = split

    def __len__(self) -> int:
        return len(self._batches)

    @property
    def device(self) -> torch.device:
        return self._batches.device

    def generator(self, epoch: int) -> torch.Generator:
        """The generator of adaptation epoch `epoch`: its shuffling and every view's draws."""
        return epoch_generator(self.seed, TEST_TIME_STREAM + epoch)

    def view_pairs(self, batch_size: int, policy: str, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One shuffled pass over the split: for each batch, two views of the same images, each augmented by
        `policy` with its own draws (the first view's, then the second's, from the epoch's generator)."""
        check_policy(policy)
        generator = self.generator(epoch)
        order = torch.randperm(len(self), generator=generator)
        for chunk in order.split(batch_size):
            images = self._batches.images.index_select(0, chunk.to(self.device))
            first = apply_policy(policy, images, generator)
            second = apply_policy(policy, images, generator)
            yield self._batches.normalise(first), self._batches.normalise(second)


def adapt_on_unlabeled(method: Method, model: nn.Module, splits: dict[str, Any], seed: int) -> dict[str, Any]:
    """Run a transductive method's `adapt_unlabeled` on the split it names, the model in evaluation mode.
    Returns {"extras": what it learned (logged with the metrics), "effective": {"transductive": split}}, or
    {} when the method does not adapt in this run."""
    split = method.unlabeled_split() if type(method).transductive else None
    if split is None:
        return {}
    if split not in UNLABELED_SPLITS:
        raise LtbenchError(f"method {method.name!r}: unlabeled_split must be one of {UNLABELED_SPLITS}, got {split!r}")
    model.eval()
    extras = method.adapt_unlabeled(model, UnlabeledImages(splits[split], seed, split))
    return {"extras": {k: float(v) for k, v in extras.items()}, "effective": {"transductive": split}}
