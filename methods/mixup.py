"""Cross-entropy on mixed images (mixup, Zhang et al. ICLR 2018), as MiSLAS's stage one trains it.

    λ ~ Beta(α, α),  p a random permutation of the batch,  x̃ = λ·x + (1-λ)·x[p]
    L = λ·CE(f(x̃), y) + (1-λ)·CE(f(x̃), y[p]),     predict argmax f(x)

Official code: dvlab-research/MiSLAS (`methods.py` mixup_data / mixup_criterion, `train_stage1.py`), α = 1 on
CIFAR-LT and ImageNet-LT. Its recipe is the named recipe `mislas-cifar` (see `methods/mislas.py`).

Differences from the official code: λ and p are drawn from the epoch's generator (λ through a numpy generator
seeded from it) instead of numpy's and torch's global generators, so a resumed trial replays them; ltbench
reports the last epoch, the official code the best test epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.api import Method, TrainingBatch, mixup, param, register_method


@register_method
class Mixup(Method):
    name = "mixup"
    description = "Cross-entropy on mixup images λx + (1-λ)x[p], λ ~ Beta(α, α) (Zhang et al.; MiSLAS stage 1)"

    @dataclass(frozen=True)
    class Params:
        alpha: float = param(1.0, "α of λ ~ Beta(α, α); 0 turns mixing off (plain cross-entropy)")

        def __post_init__(self) -> None:
            if self.alpha < 0:
                raise ValueError(f"alpha must be >= 0, got {self.alpha}")

    def training_step(self, batch: TrainingBatch) -> torch.Tensor:
        mixed = mixup(batch.images, batch.targets, self.params.alpha, batch.generator)
        return mixed.loss(F.cross_entropy, batch.logits(mixed.images))
