"""LDAM-DRW (Cao et al. NeurIPS 2019, "Learning Imbalanced Datasets with Label-Distribution-Aware Margin
Loss"; official code kaidic/LDAM-DRW, `losses.py` and `cifar_train.py`).

    cos_j(x) = <z/||z||, W_j/||W_j||>                  the cosine ("normed linear") head
    Δ_j = m · n_j^(-1/4) / max_k n_k^(-1/4)            margins, the largest m = 0.5
    L = CE_w(s · (cos(x) - Δ_y · onehot(y)), y)        s = 30, w the DRW weights (see `methods.ce_drw`)
    predict argmax_j cos_j(x)

DRW: no weights before the DRW epoch (160 of 200, scaled to the recipe as `ce-drw` does), Cui et al.'s
effective-number weights (β = 0.9999, normalised to sum to C) from then on; the weighted loss is PyTorch's
weighted mean Σ w_{y_i} ℓ_i / Σ w_{y_i}, as the official code's `F.cross_entropy(..., weight=...)`.

Differences from the official code, all deliberate:
- its `NormedLinear` starts from uniform(-1, 1) columns renormalised to unit norm; ltbench starts from
  PyTorch's default linear initialisation (the head normalises the weights, so only directions matter);
- margins and weights use ltbench's training counts (after the validation split is set aside);
- the official code reports the best test epoch; ltbench reports the last epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.api import MethodContext, param, register_method
from methods.ce_drw import DeferredReweighting, DRWParams


class NormedLinear(nn.Module):
    """Cosine classifier: logits_j = <z/||z||, W_j/||W_j||>, no bias (LDAM-DRW's `NormedLinear`)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(nn.Linear(in_features, out_features).weight.detach().clone())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(z, dim=1) @ F.normalize(self.weight, dim=1).T

    def effective_weight(self) -> torch.Tensor:
        return F.normalize(self.weight, dim=1)


def ldam_margins(class_counts: torch.Tensor, max_margin: float) -> torch.Tensor:
    """Δ_j ∝ n_j^(-1/4), scaled so the largest is `max_margin` (a class without images gets the largest)."""
    raw = class_counts.double().clamp(min=1) ** -0.25
    return (raw * (max_margin / raw.max())).float()


@dataclass(frozen=True)
class LDAMParams(DRWParams):
    max_margin: float = param(0.5, "the largest class margin Δ_j (that of the smallest class)")
    scale: float = param(30.0, "logit scale s of the LDAM loss")
    normed_head: bool = param(True, "cosine (normed) classifier head, as the official code with LDAM")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_margin < 0 or self.scale <= 0:
            raise ValueError(f"need max_margin >= 0 and scale > 0, got {self.max_margin}, {self.scale}")


@register_method
class LDAMDRW(DeferredReweighting):
    name = "ldam-drw"
    description = "LDAM loss (margins ∝ n^-1/4, s=30, cosine head) with deferred re-weighting (Cao et al. 2019)"
    Params = LDAMParams

    def __init__(self, params: Any, context: MethodContext) -> None:
        super().__init__(params, context)
        self.margins = ldam_margins(context.class_counts, params.max_margin)

    def build_head(self, feature_dim: int, num_classes: int) -> nn.Module | None:
        return NormedLinear(feature_dim, num_classes) if self.params.normed_head else None

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        margin = self.margins.to(logits.device, logits.dtype)[targets]
        shifted = logits - margin[:, None] * F.one_hot(targets, logits.shape[1]).to(logits.dtype)
        return F.cross_entropy(self.params.scale * shifted, targets, weight=self.weight_on(logits))
