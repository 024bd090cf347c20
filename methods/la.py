"""Logit-adjusted loss (Menon et al. 2021, "Long-tail learning via logit adjustment", Eq. 10).

    L(x, y) = -log softmax(f(x) + τ·log π)_y,      predict argmax_y f_y(x)

π is the empirical training prior. The official code adds log(π^τ + 1e-12), which is what `log_prior` computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.api import Method, MethodContext, log_prior, logit_adjusted_loss, param, register_method


@register_method
class LogitAdjustedLoss(Method):
    name = "la"
    description = "Logit-adjusted loss: cross-entropy on f(x) + τ·log π, predict argmax f(x) (Menon et al. 2021)"

    @dataclass(frozen=True)
    class Params:
        tau: float = param(1.0, "τ of the loss CE(f(x) + τ·log π, y); 0 is plain cross-entropy")

        def __post_init__(self) -> None:
            if self.tau < 0:
                raise ValueError(f"tau must be >= 0, got {self.tau}")

    def __init__(self, params: Params, context: MethodContext) -> None:
        super().__init__(params, context)
        self.offset = log_prior(context.priors, params.tau)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return logit_adjusted_loss(logits, targets, self.offset)
