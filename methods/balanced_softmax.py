"""Balanced Softmax (Ren et al. NeurIPS 2020, "Balanced Meta-Softmax for Long-Tailed Visual Recognition").

    L(x, y) = -log [ n_y exp(f_y(x)) / Σ_j n_j exp(f_j(x)) ] = CE(f(x) + log π, y),      predict argmax f(x)

It is the logit-adjusted loss at τ = 1 (Menon et al. 2021), so it is a named variant of `la` with τ fixed:
the one difference is the official code's offset log n_j against LA's log(π_j + 1e-12), which shifts every
logit by the same log N (no effect) and the 1e-12 (negligible). It stays a separate row so tables that print
both papers' names find each. Differences from the official code (jiawei-ren/BalancedMetaSoftmax): its
meta-learned sampler (the "Meta" part) is not included, as in the papers that report Balanced Softmax alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.api import register_method
from methods.la import LogitAdjustedLoss


@register_method
class BalancedSoftmax(LogitAdjustedLoss):
    name = "balanced-softmax"
    description = "Balanced Softmax: CE on f(x) + log π, predict argmax f(x); the LA loss at τ = 1 (Ren et al. 2020)"

    @dataclass(frozen=True)
    class Params:
        """No hyperparameters: τ is 1 by definition."""

        @property
        def tau(self) -> float:
            return 1.0
