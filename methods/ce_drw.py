"""Cross-entropy with deferred re-weighting, CE-DRW (Cao et al. 2019, the `--loss_type CE --train_rule DRW`
row of the official code kaidic/LDAM-DRW, `cifar_train.py`).

    w_j(t) = 1                                                        for epochs t < t_drw
    w_j(t) = C · [(1 - β) / (1 - β^n_j)] / Σ_k (1 - β) / (1 - β^n_k)   for t ≥ t_drw   (β = 0.9999)
    L = Σ_i w_{y_i} · CE(z_i, y_i) / Σ_i w_{y_i}                       (PyTorch's weighted-mean reduction)

The weights are Cui et al.'s effective-number weights; the official code switches them on at epoch 160 of
its 200 (`idx = epoch // 160`, betas [0, 0.9999]), where its step schedule also divides the lr by 100.

**The start epoch on other schedules.** `drw_epoch` counts in a schedule of `schedule_epochs` epochs and is
scaled to the recipe: t_drw = round(drw_epoch · E / schedule_epochs) for a recipe of E epochs. The defaults
(160 of 200) give exactly 160 on the CIFAR-LT recipe and keep re-weighting to the last fifth of any shorter
one (epoch 10 of the quick recipe's 12), so DRW never silently falls outside a short run. For an absolute
epoch set `schedule_epochs` to the recipe's epochs. The epoch where DRW started is logged with the trial's
hyperparameters (it follows from them and the recipe).

Differences from the official code: none in the loss. The weights use ltbench's training counts (after its
validation split is set aside), and the CIFAR recipe's warm-up and steps are ltbench's `cifar-lt` recipe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.api import Method, MethodContext, effective_number_weights, param, register_method


@dataclass(frozen=True)
class DRWParams:
    drw_epoch: int = param(160, "DRW starts at this epoch of a schedule_epochs-epoch schedule")
    schedule_epochs: int = param(200, "the schedule drw_epoch refers to, scaled to the recipe's epochs")
    beta: float = param(0.9999, "effective-number β of the DRW class weights")

    def __post_init__(self) -> None:
        if not 0 <= self.drw_epoch < self.schedule_epochs:
            raise ValueError(f"need 0 <= drw_epoch < schedule_epochs, got {self.drw_epoch}, {self.schedule_epochs}")
        if not 0 <= self.beta < 1:
            raise ValueError(f"beta must be in [0, 1), got {self.beta}")

    def start_epoch(self, num_epochs: int) -> int:
        """t_drw on a recipe of `num_epochs` epochs (half-up rounding, never past the last epoch)."""
        return min(num_epochs - 1, math.floor(self.drw_epoch * num_epochs / self.schedule_epochs + 0.5))


class DeferredReweighting(Method):
    """Base of the DRW methods: per-class loss weights that switch on at the (scaled) DRW epoch."""

    Params = DRWParams

    def __init__(self, params: DRWParams, context: MethodContext) -> None:
        super().__init__(params, context)
        self.class_weights: torch.Tensor | None = None  # None: unweighted (before DRW starts)

    def on_epoch_start(self, epoch: int, num_epochs: int) -> None:
        started = epoch >= self.params.start_epoch(num_epochs)
        self.class_weights = effective_number_weights(self.context.class_counts, self.params.beta) if started else None

    def weight_on(self, logits: torch.Tensor) -> torch.Tensor | None:
        return None if self.class_weights is None else self.class_weights.to(logits.device, logits.dtype)


@register_method
class CrossEntropyDRW(DeferredReweighting):
    name = "ce-drw"
    description = "Cross-entropy with deferred re-weighting: effective-number weights from epoch 160/200 (Cao et al.)"

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, weight=self.weight_on(logits))
