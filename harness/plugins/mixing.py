"""Mixed images and labels (mixup, Zhang et al. 2018; CutMix, Yun et al. 2019), drawn so a resumed trial
replays them exactly.

MiSLAS's stage one (and GLMC) train on mixed batches: x̃ = λ·x + (1-λ)·x[p], with λ ~ Beta(α, α) and p a random
permutation of the batch, and the loss λ·ℓ(f(x̃), y) + (1-λ)·ℓ(f(x̃), y[p]). CutMix pastes a box of x[p] into x
instead: a box of side ⌈side·√(1-λ)⌉ (GLMC) or ⌊side·√(1-λ)⌋ (Yun et al.) around a uniformly drawn pixel,
clipped to the image. The official codes draw λ and the box centre from numpy's global generator and p from
torch's; here all come from the epoch's generator (`TrainingBatch`), λ through a numpy generator seeded from it
(torch has no seeded Beta draw), so the draws are the same on every device and after a resume.
"""

from __future__ import annotations

import math
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


@dataclass(frozen=True)
class CutBox:
    """A CutMix box: rows [top, bottom) and columns [left, right) of an image (empty when clipped away)."""

    top: int
    bottom: int
    left: int
    right: int

    def area_fraction(self, height: int, width: int) -> float:
        """The share of an image of `height` x `width` that the box covers."""
        return (self.bottom - self.top) * (self.right - self.left) / (height * width)


def cutmix_box(height: int, width: int, lam: float, generator: torch.Generator, *, round_up: bool = True) -> CutBox:
    """The CutMix box for λ, as the official `rand_bbox` draws it: sides ⌈h·√(1-λ)⌉ and ⌈w·√(1-λ)⌉ (GLMC's
    `utils.rand_bbox`; `round_up=False`: ⌊·⌋, Yun et al.'s), a centre pixel drawn uniformly (its row, then its
    column, from `generator`), the box reaching side//2 either way of it, clipped to the image."""
    cut = math.sqrt(1.0 - lam)
    rounding = math.ceil if round_up else math.floor
    cut_h, cut_w = int(rounding(height * cut)), int(rounding(width * cut))
    cy = int(torch.randint(height, (1,), generator=generator))
    cx = int(torch.randint(width, (1,), generator=generator))
    return CutBox(
        top=min(max(cy - cut_h // 2, 0), height),
        bottom=min(max(cy + cut_h // 2, 0), height),
        left=min(max(cx - cut_w // 2, 0), width),
        right=min(max(cx + cut_w // 2, 0), width),
    )


def paste_box(images: torch.Tensor, others: torch.Tensor, box: CutBox) -> torch.Tensor:
    """`images` (B, C, H, W) with the box's pixels taken from `others` (same shape); a new tensor."""
    out = images.clone()
    out[:, :, box.top : box.bottom, box.left : box.right] = others[:, :, box.top : box.bottom, box.left : box.right]
    return out


def cutmix(images: torch.Tensor, targets: torch.Tensor, alpha: float, generator: torch.Generator) -> MixedBatch:
    """CutMix a batch with a random permutation of itself, as Yun et al.'s official training loop: λ ~ Beta(α, α),
    then the permutation, then the box (⌊·⌋ sides) from `generator`; the targets' weight λ becomes the share of
    each image left unpasted, 1 - box area / image area."""
    lam = beta_draw(alpha, generator)
    order = torch.randperm(len(images), generator=generator).to(images.device)
    height, width = images.shape[-2:]
    box = cutmix_box(height, width, lam, generator, round_up=False)
    mixed = paste_box(images, images[order], box)
    return MixedBatch(mixed, targets, targets[order], 1.0 - box.area_fraction(height, width))
