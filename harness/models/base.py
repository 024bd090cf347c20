"""Every model is a feature backbone plus a separate linear classifier head.

Decoupled methods (cRT, τ-norm, LWS, NCM, LORT) freeze or reuse the backbone and replace or re-train the head,
so the two are separate modules and `features` is part of the interface.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from harness.core.registry import Registry


class LTModel(nn.Module):
    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, head: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, num_classes) if head is None else head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


ModelFactory = Callable[[int, int], LTModel]  # (num_classes, in_channels) -> model
MODELS: Registry[ModelFactory] = Registry("model")


def build_model(name: str, num_classes: int, in_channels: int) -> LTModel:
    return MODELS.get(name)(num_classes, in_channels)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
