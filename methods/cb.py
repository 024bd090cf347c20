"""Class-balanced loss (Cui et al. CVPR 2019, "Class-Balanced Loss Based on Effective Number of Samples";
official code richardaecn/class-balanced-loss).

    E_n = (1 - β^n) / (1 - β)                                  effective number of n images
    w_j = C · (1/E_{n_j}) / Σ_k (1/E_{n_k})                    weights summing to C
    softmax form (their Eq. 5b):  L = (1/B) Σ_i w_{y_i} · (-log p_{y_i})
    focal form:                   L = (1/B) Σ_i w_{y_i} · (1 - p_{y_i})^γ · (-log p_{y_i})
    predict argmax f(x)

β ∈ {0.9, 0.99, 0.999, 0.9999} in the paper (default 0.9999, the CIFAR-LT choice that LDAM-DRW and Weight
Balancing reuse). Differences from the official code: its focal form is the sigmoid (one-vs-all) focal loss
with per-example weights; ltbench's `focal` form is the softmax focal loss of Lin et al.'s multi-class
extension (the form LDAM-DRW's `focal` row uses), so `form: focal` with β → 0 equals method `focal`. The
paper tunes β and γ per dataset on the test set; ltbench fixes them (hyperparameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from harness.api import (
    Method,
    MethodContext,
    effective_number_weights,
    focal_terms,
    param,
    per_class_weighted_mean,
    register_method,
)

FORMS = ("softmax", "focal")


@register_method
class ClassBalancedLoss(Method):
    name = "cb"
    description = "Class-balanced loss: CE or focal weighted by 1/effective number (1-β^n)/(1-β) (Cui et al. 2019)"

    @dataclass(frozen=True)
    class Params:
        beta: float = param(0.9999, "effective-number β of the class weights (1-β)/(1-β^n_y)")
        form: str = param("softmax", "weighted loss: softmax (cross-entropy) or focal")
        gamma: float = param(1.0, "focusing exponent γ of the focal form")

        def __post_init__(self) -> None:
            if self.form not in FORMS:
                raise ValueError(f"form must be one of {', '.join(FORMS)}, got {self.form!r}")
            if not 0 <= self.beta < 1 or self.gamma < 0:
                raise ValueError(f"need 0 <= beta < 1 and gamma >= 0, got beta={self.beta}, gamma={self.gamma}")

    def __init__(self, params: Any, context: MethodContext) -> None:
        super().__init__(params, context)
        self.class_weights = effective_number_weights(context.class_counts, params.beta)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.params.form == "focal":
            per_sample = focal_terms(logits, targets, self.params.gamma)
        else:
            per_sample = F.cross_entropy(logits, targets, reduction="none")
        return per_class_weighted_mean(per_sample, targets, self.class_weights)
