"""Focal loss (Lin et al. ICCV 2017), softmax form, as the `--loss_type Focal` row of LDAM-DRW's code
(kaidic/LDAM-DRW `losses.py`), a baseline in Cao et al. 2019 and later long-tail papers.

    p_y = softmax(f(x))_y,      L = mean_i (1 - p_{y_i})^γ · (-log p_{y_i}),      predict argmax f(x)

γ = 0 is plain cross-entropy. The default γ = 1 is what that code trains with (`FocalLoss(gamma=1)`); Lin et
al.'s detection default is γ = 2. No differences from that code (without DRW weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.api import Method, focal_terms, param, register_method


@register_method
class FocalLoss(Method):
    name = "focal"
    description = "Focal loss (1 - p_y)^γ · CE, softmax form (Lin et al. 2017; γ = 1 as in LDAM-DRW's code)"

    @dataclass(frozen=True)
    class Params:
        gamma: float = param(1.0, "focusing exponent γ; 0 is plain cross-entropy")

        def __post_init__(self) -> None:
            if self.gamma < 0:
                raise ValueError(f"gamma must be >= 0, got {self.gamma}")

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return focal_terms(logits, targets, self.params.gamma).mean()
