"""Weight Balancing, stage two (Alshammari et al. CVPR 2022, "Long-Tailed Recognition via Weight
Balancing"; official demos ShadeAlsha/LTR-weight-balancing, `demo2_second-stage-training`,
`utils/regularizers.py`, `utils/class_balanced_loss.py`, `utils/trainval.py`).

Stage one is plain cross-entropy with a tuned weight decay: ltbench's recipe `wb-stage1` (SGD lr 0.01,
momentum 0.9, weight decay 5e-3, batch 64, cosine, 320 epochs), a shared backbone of its own that every
method naming `stage1_recipe: wb-stage1` reuses. Stage two fine-tunes only the stage-1 classifier (weight
and bias, not re-initialised) on the frozen backbone:

    w_j = C · [(1 - β)/(1 - β^n_j)] / Σ_k (1 - β)/(1 - β^n_k),   β = 0.9999   (class-balanced weights)
    loss "bce-softmax" (the demo's `CB_loss(..., "softmax", ...)`):
        L = 1/(B·C) Σ_i Σ_j w_{y_i} · BCE(softmax(z_i)_j, onehot(y_i)_j)
    loss "softmax" (Cui et al.'s Eq. 5b):  L = (1/B) Σ_i w_{y_i} · CE(z_i, y_i)
    SGD lr 0.01, momentum 0.9, weight decay 0.1, batch 64, 10 epochs, cosine
    MaxNorm by projected gradient descent after every step:  W_j ← W_j · min(1, r / ||W_j||)
        r = min_j ||W⁰_j|| + t · (max_j ||W⁰_j|| - min_j ||W⁰_j||),  t = 0.1,  W⁰ the stage-1 classifier
        (the demo's per-layer threshold; `max_norm_relative: false` uses r = t itself); the bias is not clipped
    keep the epoch with the best validation mean per-class accuracy
    evaluate with a test-time flip: the scores of each image and its mirror averaged (`utils/eval_funcs.py`,
        `print_accuracy(..., test_aug=True)`; the demo notebook's model scores 51.98 without it and 53.1 with it)

Differences from the official demos:
- the demos project once per epoch (after the training phase in `train_model`); the paper describes
  projected gradient descent, and ltbench projects after every optimiser step;
- the demos keep the best epoch by test accuracy; ltbench chooses on its validation split (ties: validation
  loss, then the middle epoch; the demos keep the first), scoring epochs without the flip as the demos'
  `train_model` does, and reports the kept epoch with it;
- stage one's kept epoch: the demo keeps its best test epoch (`with_WD_model_best`); recipe `wb-stage1` keeps
  the best validation epoch (`keep: best-val`);
- the demos use a CIFAR ResNet-34 and the first n images per class; ltbench uses the suite's model and
  selection (the `paper-alshammari2022` suite sets `selection: first`).
As the demos (`utils/trainval.py: train_model`): cosine stepped at the start of each epoch, every image once
per epoch with a partial last batch, and the model in train mode, so the frozen backbone's BatchNorm
statistics are re-estimated in stage two (`bn: train`; `bn: eval` freezes them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.api import (
    Method,
    MethodContext,
    StageTwo,
    StageTwoResult,
    check_bn_mode,
    effective_number_weights,
    param,
    per_class_weighted_mean,
    register_method,
)

LOSSES = ("bce-softmax", "softmax")


class MaxNorm:
    """Projection of each class's weight vector (a row) onto the ball of radius `radius`."""

    def __init__(self, radius: float) -> None:
        self.radius = radius

    @classmethod
    def relative_to(cls, weight: torch.Tensor, fraction: float) -> MaxNorm:
        """The demo's threshold: min norm + fraction · (max norm - min norm) of `weight`'s rows."""
        norms = weight.detach().norm(dim=1)
        return cls(float(norms.min() + fraction * (norms.max() - norms.min())))

    @torch.no_grad()
    def project(self, weight: torch.Tensor) -> None:
        norms = weight.norm(dim=1, keepdim=True)
        weight.mul_(torch.clamp(self.radius / norms.clamp(min=torch.finfo(weight.dtype).tiny), max=1.0))


def bce_on_softmax_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The demo's "softmax" class-balanced loss: weighted binary cross-entropy of softmax(z) against one-hot."""
    onehot = F.one_hot(targets, logits.shape[1]).to(logits.dtype)
    per_entry = weights.to(logits.device, logits.dtype)[targets][:, None].expand_as(onehot)
    return F.binary_cross_entropy(logits.softmax(dim=1), onehot, weight=per_entry)


@register_method
class WeightBalancing(Method):
    name = "wb"
    description = "Weight Balancing stage 2: fc with class-balanced loss, wd 0.1, MaxNorm (Alshammari et al. 2022)"
    stage1 = "ce"

    @dataclass(frozen=True)
    class Params:
        stage1_recipe: str = param("wb-stage1", "recipe of the shared stage-1 backbone; same: the trial's own")
        epochs: int = param(10, "stage-two epochs fine-tuning the classifier")
        lr: float = param(0.01, "SGD learning rate (cosine stepped per epoch)")
        momentum: float = param(0.9, "SGD momentum")
        weight_decay: float = param(0.1, "weight decay of the classifier")
        batch_size: int = param(64, "stage-two batch size")
        beta: float = param(0.9999, "effective-number β of the class-balanced loss")
        loss: str = param("bce-softmax", "bce-softmax (the demos) or softmax (Cui et al.'s weighted CE)")
        max_norm: float = param(0.1, "MaxNorm threshold (relative to the stage-1 norms, or absolute)")
        max_norm_relative: bool = param(True, "threshold = min + t·(max - min) of the stage-1 class norms (the demos)")
        sampler: str = param("instance", "stage-two training sampler")
        augment: bool = param(True, "augmented images through the frozen backbone (false: cached features)")
        bn: str = param("train", "backbone BatchNorm in stage two: train (the demos), eval")
        test_flip: bool = param(True, "average the scores of each image and its horizontal flip (the demos)")

        def __post_init__(self) -> None:
            check_bn_mode(self.bn, self.augment)
            if self.loss not in LOSSES:
                raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
            if self.epochs < 1 or self.lr <= 0 or self.weight_decay < 0 or self.max_norm <= 0:
                raise ValueError("need epochs >= 1, lr > 0, weight_decay >= 0 and max_norm > 0")

    def __init__(self, params: Params, context: MethodContext) -> None:
        super().__init__(params, context)
        self.class_weights = effective_number_weights(context.class_counts, params.beta)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.params.loss == "softmax":
            per_sample = F.cross_entropy(logits, targets, reduction="none")
            return per_class_weighted_mean(per_sample, targets, self.class_weights)
        return bce_on_softmax_loss(logits, targets, self.class_weights)

    def max_norm(self, head: nn.Linear) -> MaxNorm:
        p = self.params
        return MaxNorm.relative_to(head.weight, p.max_norm) if p.max_norm_relative else MaxNorm(p.max_norm)

    def fit_classifier(self, stage: StageTwo) -> StageTwoResult:
        p = self.params
        head = stage.stage1_head
        projection = self.max_norm(head)
        fitted = stage.train_head(
            head,
            self.loss,
            epochs=p.epochs,
            lr=p.lr,
            momentum=p.momentum,
            weight_decay=p.weight_decay,
            batch_size=p.batch_size,
            sampler=p.sampler,
            augment=p.augment,
            select_best_on_val=True,
            bn=p.bn,
            drop_last=False,  # the demos' DataLoader keeps the last partial batch
            lr_shift=1,  # the demos' train_model steps the scheduler at the start of each epoch
            after_step=lambda: projection.project(head.weight),
        )
        return StageTwoResult(fitted, extras={"max_norm_radius": projection.radius}, test_flip=p.test_flip)
