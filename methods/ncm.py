"""Nearest class mean classifier (Kang et al. 2020) on the frozen CE backbone.

    ẑ = (z - z̄) / ||z - z̄||,     m_c = mean of ẑ over the training images of class c,     predict argmin_c ||ẑ - m_c||

z̄ is the mean training feature (of un-augmented training images). As the official code
(facebookresearch/classifier-balancing: `get_knncentroids` and `KNNClassifier`, feat_type "cl2n", dist "l2"):
features are centred and L2-normalised, the class means of those features are NOT normalised again, and
the distance is Euclidean. Centring and normalising are hyperparameters (`center`, `normalize`); the
"scores" are negative Euclidean distances. No remaining difference from the official code is known.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.api import Method, StageTwo, StageTwoResult, param, register_method


class NearestClassMean(nn.Module):
    def __init__(self, means: torch.Tensor, center: torch.Tensor, normalize: bool) -> None:
        super().__init__()
        self.register_buffer("means", means)
        self.register_buffer("center", center)
        self.normalize = normalize

    def embed(self, z: torch.Tensor) -> torch.Tensor:
        z = z - self.center
        return F.normalize(z, dim=1) if self.normalize else z

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return -torch.cdist(self.embed(z), self.means)

    def effective_weight(self) -> torch.Tensor:
        return self.means


@register_method
class NCM(Method):
    name = "ncm"
    description = "Nearest class mean (Euclidean) of centred, L2-normalised CE features (Kang et al. 2020)"
    stage1 = "ce"

    @dataclass(frozen=True)
    class Params:
        center: bool = param(True, "subtract the mean training feature first")
        normalize: bool = param(True, "L2-normalise the features")

    def fit_classifier(self, stage: StageTwo) -> StageTwoResult:
        features, labels = stage.features("train")
        center = features.mean(0) if self.params.center else torch.zeros_like(features[0])
        head = NearestClassMean(torch.zeros(stage.num_classes, features.shape[1]), center, self.params.normalize)
        embedded = head.embed(features)
        means = torch.stack([embedded[labels == c].mean(0) for c in range(stage.num_classes)])
        head.means.copy_(means)  # means of normalised features, not normalised again (official code)
        return StageTwoResult(head.to(features.device))
