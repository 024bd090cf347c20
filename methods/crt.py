"""Classifier re-training, cRT (Kang et al. 2020).

    freeze the CE backbone (BatchNorm in eval mode);  W, b ← re-initialised;
    minimise  CE(W z + b, y)  with class-balanced sampling

Kang et al.'s ImageNet-LT recipe: 10 epochs, lr 0.2 (the stage-1 lr), wd 5e-4, cosine, batch 512, the
class-aware sampler with 4 images per class, augmented images. CIFAR has no official recipe; ltbench uses
the same shape: 10 epochs at the stage-1 lr and batch (`lr_scale` = 1). `augment=False` trains on cached
features of un-augmented images instead (much cheaper; the quick suite uses it).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from harness.api import Method, RetrainParams, StageTwo, StageTwoResult, register_method


@register_method
class ClassifierRetraining(Method):
    name = "crt"
    description = "Classifier re-training: new linear head on the frozen CE backbone, class-balanced (Kang et al.)"
    stage1 = "ce"
    Params = RetrainParams

    def fit_classifier(self, stage: StageTwo) -> StageTwoResult:
        head = nn.Linear(stage.model.feature_dim, stage.num_classes)  # re-initialised
        return StageTwoResult(stage.retrain(head, F.cross_entropy, self.params))
