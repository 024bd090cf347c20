"""Learnable weight scaling, LWS (Kang et al. 2020).

    logits_i = s_i · (W_i · z + b_i),     W, b frozen from the CE model, only s learned (s_i = 1 at start)

Trained as cRT is (see `methods/crt.py`: int(N / batch) steps per epoch, cosine stepped per epoch, the
backbone's BatchNorm in training mode, the epoch best on validation), with class-balanced (class-aware)
sampling for 5 epochs (ImageNet-LT: lr 0.2, wd 5e-4; ltbench takes the stage-1 lr and batch, `lr_scale` = 1).
Remaining differences as for cRT.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.api import Method, RetrainParams, StageTwo, StageTwoResult, param, register_method


class ScaledLinear(nn.Module):
    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.register_buffer("weight", linear.weight.detach().clone())
        self.register_buffer("bias", linear.bias.detach().clone())
        self.scales = nn.Parameter(torch.ones(linear.out_features))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.scales * (z @ self.weight.T + self.bias)

    def effective_weight(self) -> torch.Tensor:
        return self.scales.detach()[:, None] * self.weight


@register_method
class LearnableWeightScaling(Method):
    name = "lws"
    description = "Learnable weight scaling s_i·(W_i z + b_i) on the frozen CE classifier (Kang et al.)"
    stage1 = "ce"

    @dataclass(frozen=True)
    class Params(RetrainParams):
        epochs: int = param(5, "stage-two epochs learning the per-class scales")

    def fit_classifier(self, stage: StageTwo) -> StageTwoResult:
        head = ScaledLinear(stage.stage1_head)
        return StageTwoResult(stage.retrain(head, F.cross_entropy, self.params, parameters=[head.scales]))
