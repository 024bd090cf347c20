"""MiSLAS (Zhong et al. CVPR 2021, "Improving Calibration for Long-Tailed Recognition"): stage two on a mixup
backbone, with label-aware smoothing and BatchNorm shift learning.

Stage one is the `mixup` method (cross-entropy on mixed images, α = 1). Stage two, on its frozen backbone:

    s_j = ε_K + (ε_1 - ε_K) · sin(π/2 · (n_j - n_K) / (n_1 - n_K))       concave label-aware smoothing
    L = (1 - s_y) · (-log p_y) + s_y · mean_j(-log p_j),   p = softmax(w ⊙ (W z + b))
    predict argmax_j w_j (W_j z + b_j)

n_1 / n_K the largest / smallest training count, ε_1 / ε_K the head / tail smoothing. The classifier W, b
starts from stage one's and is re-trained at lr × `lr_factor`; the learnable weight scaling w (ones at the
start) at lr. "Shift learning" on BatchNorm is the backbone in training mode during stage two (its weights
frozen, no gradient): its BatchNorm statistics shift to the class-balanced batches (`shift_bn`).

As the official code (dvlab-research/MiSLAS @ 0fc381e, `train_stage2.py`, `methods.py`, config/cifar*/
*_stage2_mislas.yaml): 10 epochs, batch 128, SGD momentum 0.9, wd 2e-4, lr 0.1 cosine per epoch starting at
the full lr (`lr_shift` 0), the class-aware sampler (4 images per class), augmented images (crop + flip).
Its per-cell settings (smooth_head, smooth_tail, shift_bn, lr_factor): CIFAR-100-LT r=100 (0.4, 0.1, on,
0.2, the defaults here), r=50 (0.3, 0.0, on, 0.1), r=10 (0.2, 0.0, on, 0.1); CIFAR-10-LT r=100 (0.3, 0.0, off,
0.5), r=50 (0.2, 0.0, off, 0.2), r=10 (0.1, 0.0, off, 0.2); `paper-mislas` sets them per dataset.

Differences from the official code:
- the epoch kept is the one best on ltbench's validation split (`choose`'s rule); the official code keeps the
  best test epoch;
- an epoch is int(N / batch) class-aware batches; the official loop runs ceil(N / batch) + 1;
- the smoothing uses ltbench's training counts (after the validation split is set aside); with every class
  equally frequent (n_1 = n_K, where the official formula divides by zero) every class gets ε_1;
- stage one's warm-up rises per iteration (the official code per epoch: lr·e/5 in epoch e of 1..5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.api import Method, StageTwo, StageTwoResult, param, register_method


def label_aware_smoothing(class_counts: torch.Tensor, smooth_head: float, smooth_tail: float) -> torch.Tensor:
    """Each class's smoothing ε_j, the official concave shape: ε_K at the rarest class, ε_1 at the most frequent."""
    counts = class_counts.double()
    n_max, n_min = float(counts.max()), float(counts.min())
    if n_max == n_min:
        return torch.full_like(counts, smooth_head).float()
    position = (counts - n_min) * math.pi / (2 * (n_max - n_min))
    return (smooth_tail + (smooth_head - smooth_tail) * torch.sin(position)).float()


def label_aware_smoothing_loss(logits: torch.Tensor, targets: torch.Tensor, smoothing: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of (1 - ε_y)·NLL + ε_y·(mean over classes of -log p)."""
    eps = smoothing.to(logits.device)[targets]
    log_probs = F.log_softmax(logits, dim=-1)
    nll = -log_probs.gather(1, targets[:, None]).squeeze(1)
    return ((1 - eps) * nll - eps * log_probs.mean(dim=-1)).mean()


class WeightScaledLinear(nn.Module):
    """w ⊙ (W z + b): a linear classifier followed by one learnable scale per class (MiSLAS's LWS)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear
        self.scales = nn.Parameter(torch.ones(linear.out_features))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.scales * self.linear(z)

    def effective_weight(self) -> torch.Tensor:
        return self.scales.detach()[:, None] * self.linear.weight.detach()


@register_method
class MiSLAS(Method):
    name = "mislas"
    description = "MiSLAS: mixup backbone, then label-aware smoothing, weight scaling and BN shift (Zhong et al.)"
    stage1 = "mixup"
    sampler = "class-aware"  # stage two's: a class, then 4 of its images (the official ClassAwareSampler)

    @dataclass(frozen=True)
    class Params:
        smooth_head: float = param(0.4, "label smoothing ε_1 of the most frequent class")
        smooth_tail: float = param(0.1, "label smoothing ε_K of the rarest class")
        shift_bn: bool = param(True, "BatchNorm statistics re-estimated on stage two's batches (shift learning)")
        lr: float = param(0.1, "stage-two lr of the weight scaling (cosine per epoch from the full lr)")
        lr_factor: float = param(0.2, "the classifier's lr is lr × lr_factor")
        epochs: int = param(10, "stage-two epochs")
        weight_decay: float = param(2e-4, "stage-two weight decay")
        augment: bool = param(True, "augmented images through the backbone (false: cached features; no shift_bn)")

        def __post_init__(self) -> None:
            if not (0 <= self.smooth_tail <= 1 and 0 <= self.smooth_head <= 1):
                raise ValueError("smooth_head and smooth_tail must lie in [0, 1]")
            if self.lr <= 0 or self.lr_factor <= 0 or self.epochs < 1 or self.weight_decay < 0:
                raise ValueError("need lr > 0, lr_factor > 0, epochs >= 1 and weight_decay >= 0")
            if self.shift_bn and not self.augment:
                raise ValueError(
                    "shift_bn re-estimates BatchNorm statistics from the images of each stage-two batch, but "
                    "augment: false trains on cached features; set shift_bn: false with augment: false"
                )

    def fit_classifier(self, stage: StageTwo) -> StageTwoResult:
        p = self.params
        head = WeightScaledLinear(stage.stage1_head)
        smoothing = label_aware_smoothing(stage.context.class_counts, p.smooth_head, p.smooth_tail)
        groups = [
            {"params": list(head.linear.parameters()), "lr": p.lr * p.lr_factor},
            {"params": [head.scales], "lr": p.lr},
        ]
        trained = stage.train_head(
            head,
            lambda logits, targets: label_aware_smoothing_loss(logits, targets, smoothing),
            epochs=p.epochs,
            lr=p.lr,
            weight_decay=p.weight_decay,
            sampler=self.sampler_name(),
            augment=p.augment,
            parameters=groups,
            select_best_on_val=True,
            bn="train" if p.shift_bn else "eval",
            drop_last=True,
            lr_shift=0,
        )
        return StageTwoResult(trained)
