"""Mixed images and labels (mixup, Zhang et al. 2018), drawn so a resumed trial replays them exactly.

MiSLAS's stage one (and GLMC) train on mixed batches: x̃ = λ·x + (1-λ)·x[p], with λ ~ Beta(α, α) and p a random
permutation of the batch, and the loss λ·ℓ(f(x̃), y) + (1-λ)·ℓ(f(x̃), y[p]). The official codes draw λ from
numpy's global generator and p from torch's; here both come from the epoch's generator (`TrainingBatch`), λ
through a numpy generator seeded from it (torch has no seeded Beta draw), so the draws are the same on every
device and after a resume.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


def beta_draw(alpha: float, generator: torch.Generator) -> float:
    """λ ~ Beta(α, α) from `generator`; α <= 0 gives 1 (no mixing), as the official mixup_data does."""
    if alpha <= 0:
        return 1.0
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


@dataclass(frozen=True)
class MixedBatch:
    """A mixed batch: images λ·x + (1-λ)·x[p], and the two targets each image carries with weights λ, 1-λ."""

    images: torch.Tensor
    targets_a: torch.Tensor
    targets_b: torch.Tensor
    lam: float

    def loss(self, criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], logits: torch.Tensor):
        """λ·criterion(logits, y) + (1-λ)·criterion(logits, y[p]) (the official mixup_criterion)."""
        return self.lam * criterion(logits, self.targets_a) + (1 - self.lam) * criterion(logits, self.targets_b)


def mixup(images: torch.Tensor, targets: torch.Tensor, alpha: float, generator: torch.Generator) -> MixedBatch:
    """Mix a batch with a random permutation of itself (λ first, then the permutation, from `generator`)."""
    lam = beta_draw(alpha, generator)
    order = torch.randperm(len(images), generator=generator).to(images.device)
    mixed = lam * images + (1 - lam) * images[order]
    return MixedBatch(mixed, targets, targets[order], lam)
