"""τ-normalised classifier (Kang et al. 2020, "Decoupling representation and classifier").

    W̃_i = W_i / ||W_i||^τ,      logits = z · W̃ᵀ   (bias dropped)

No training: τ = 0 is the CE classifier without its bias, τ = 1 gives every class an equal-norm weight. τ* is
chosen on the validation split from a grid over [0, 2] (the official code's 21 points); τ = 1 is reported as
variant `tau1` (Menon et al.'s "weight normalisation τ = 1").
"""

from __future__ import annotations

import torch
from torch import nn

from harness.api import Method, StageTwo, StageTwoResult, TauSearchParams, register_method


class TauNormHead(nn.Module):
    def __init__(self, weight: torch.Tensor, tau: float) -> None:
        super().__init__()
        norms = weight.norm(dim=1, keepdim=True)
        self.register_buffer("weight", weight / norms**tau)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.weight.T

    def effective_weight(self) -> torch.Tensor:
        return self.weight


@register_method
class TauNormalisation(Method):
    name = "tau-norm"
    description = "τ-normalised classifier W_i/||W_i||^τ on the CE model, τ* chosen on validation (Kang et al.)"
    stage1 = "ce"

    Params = TauSearchParams  # τ in [0, 2], 21 points, as the official code

    def fit_classifier(self, stage: StageTwo) -> StageTwoResult:
        weight = stage.stage1_head.weight.detach()
        chosen, head = stage.search_tau(lambda tau: TauNormHead(weight, tau), self.params)
        return StageTwoResult(head, variants={"tau1": TauNormHead(weight, 1.0)}, extras={"chosen_tau": chosen})
