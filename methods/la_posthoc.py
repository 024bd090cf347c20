"""Post-hoc logit adjustment (Menon et al. 2021, Eq. 9) on the shared cross-entropy model.

    predict argmax_y  f_y(x) - τ·log π_y

Reported with τ* chosen on the validation split from a grid (the main row) and with τ = 1 (variant `tau1`).
Not combined with the LA loss: it adjusts a model trained with plain cross-entropy.

Remaining difference: Menon et al.'s τ* is the best τ on the test set (Table 3: "the best possible value";
Fig. 3 sweeps τ against test error); ltbench chooses τ* on validation, so the published τ* cells are marked as
chosen on test.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from harness.api import Method, StageTwo, StageTwoResult, TauSearchParams, param, register_method


class PriorAdjustedHead(nn.Module):
    """The stage-1 linear classifier with τ·log π subtracted from its logits."""

    def __init__(self, linear: nn.Module, log_prior: torch.Tensor, tau: float) -> None:
        super().__init__()
        self.linear = linear
        self.register_buffer("offset", tau * log_prior)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z) - self.offset


@register_method
class PosthocLogitAdjustment(Method):
    name = "la-posthoc"
    description = "Post-hoc logit adjustment of the CE model: argmax f(x) - τ·log π, τ* chosen on validation"
    stage1 = "ce"

    @dataclass(frozen=True)
    class Params(TauSearchParams):
        tau_max: float = param(3.0, "largest τ of the validation grid")
        tau_steps: int = param(31, "τ values on the grid, tau_min to tau_max")

    def fit_classifier(self, stage: StageTwo) -> StageTwoResult:
        linear = stage.stage1_head.eval()
        log_prior = torch.log(stage.context.priors + 1e-12).float().to(stage.device)
        chosen, head = stage.search_tau(lambda tau: PriorAdjustedHead(linear, log_prior, tau), self.params)
        return StageTwoResult(
            head, variants={"tau1": PriorAdjustedHead(linear, log_prior, 1.0)}, extras={"chosen_tau": chosen}
        )
