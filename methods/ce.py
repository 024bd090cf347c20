"""Cross-entropy (joint training, ERM): softmax cross-entropy with instance-balanced sampling.

    L(x, y) = -log softmax(f(x))_y,   predict argmax_y f_y(x)

The baseline every long-tail paper starts from, and (with the default sampler) the shared stage 1 of the
decoupled methods. `sampler` gives Kang et al.'s joint training with other samplers (`class-balanced`,
`square-root`, `progressive`).

Which epoch a run reports is its recipe's (`keep`): `imagenet-lt`, `lort-stage1` and `wb-stage1` keep the epoch
best on validation, as Kang et al.'s `run_networks.py` keeps its best validation epoch (LOS and the Weight
Balancing demo keep their best *test* epoch; ltbench never chooses on test); the CIFAR recipe keeps the last.
The kept epoch is recorded (`ran.kept_epoch`). Remaining difference: ties on validation accuracy keep the earliest
epoch, as Kang's `>` comparison does, not by validation loss as ltbench's stage two does. The class-aware sampler
carries its cycles across epochs as Kang's `RandomCycleIter`s do.
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
