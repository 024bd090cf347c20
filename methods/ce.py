"""Cross-entropy (joint training, ERM): softmax cross-entropy with instance-balanced sampling.

    L(x, y) = -log softmax(f(x))_y,   predict argmax_y f_y(x)

The baseline every long-tail paper starts from, and (with the default sampler) the shared stage 1 of the
decoupled methods. `sampler` gives Kang et al.'s joint training with other samplers (`class-balanced`,
`square-root`, `progressive`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.api import Method, param, register_method


@register_method
class CrossEntropy(Method):
    name = "ce"
    description = "Joint training with softmax cross-entropy and instance-balanced sampling (ERM)"

    @dataclass(frozen=True)
    class Params:
        sampler: str = param(
            "instance", "training sampler (instance, square-root, class-balanced, progressive, class-aware, ...)"
        )

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets)
