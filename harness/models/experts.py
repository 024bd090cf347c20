"""A multi-expert network for RIDE and SADE, built from the dataset's CIFAR-style ResNet.

RIDE's and SADE's official CIFAR models (frank-xwang/RIDE-LongTailRecognition @ ab8be5c,
`model/ldam_drw_resnets/ride_resnet_cifar.py`; Vanint/SADE-AgnosticLT @ cba11b8,
`model/ldam_drw_resnets/expert_resnet_cifar.py`, the same network) share the stem and the first stage
(`conv1`, `bn1`, `layer1`: one set of parameters) and give every expert its own second and third stages
(`layer2s[i]`, `layer3s[i]`), its own global average pooling and its own classifier. With
`reduce_dimension` (both papers' CIFAR configs) an expert's stages are 3/4 as wide: 24 and 48 channels
instead of 32 and 64. A cosine classifier (`use_norm`) scores s · cos(z, w_j), s = 30. The prediction is the
mean of the experts' logits.

Here the shared part is the dataset backbone's own stem and first stage (the same modules, so a method built
on it keeps their initialisation), and every expert's later stages are new blocks of the same kind at
`width_factor` of the backbone's widths (0.75: the official 24/48 of ResNet-32's 32/64).

It stays an `LTModel`: `features(x)` is the experts' pooled features side by side (B x E·d) and the head maps
them to Σ_e a_e z_e with aggregation weights a_e = 1/E (the mean of the experts' logits; SADE learns others at
test time), so `model(x)` is the prediction. `expert_logits(x)` gives every expert's logits z_e (B x E x C),
which the methods' losses need. The head's `effective_weight()` is the experts' class rows side by side, each
scaled by s·a_e (the matrix that scores the concatenated normalised features), so analysis.npz keeps a weight
norm per class; its feature correlation is left empty (the head has no single final linear layer), and the
plots that read them list only single-head methods.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.core.errors import LtbenchError
from harness.models.base import LTModel
from harness.models.resnet_cifar import BasicBlock, CifarResNetBackbone

OFFICIAL_WIDTH_FACTOR = 0.75  # reduce_dimension: 32 -> 24 and 64 -> 48 channels


class CosineLinear(nn.Module):
    """cos(z, w_j) for every class j, no bias (the official `NormedLinear`, weights stored class by row)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        # the official draws uniform(-1, 1) entries and renormalises each class's vector: only the direction
        # matters in the forward pass, so the uniform draw alone gives the same distribution of directions
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-1, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(z, dim=1) @ F.normalize(self.weight, dim=1).T

    def effective_weight(self) -> torch.Tensor:
        return F.normalize(self.weight.detach(), dim=1)


class SharedStem(nn.Module):
    """The layers every expert shares: the backbone's stem convolution, its BatchNorm and its first stage."""

    def __init__(self, conv1: nn.Module, bn1: nn.Module, stage1: nn.Module) -> None:
        super().__init__()
        self.conv1, self.bn1, self.stage1 = conv1, bn1, stage1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage1(F.relu(self.bn1(self.conv1(x))))


class ExpertBranch(nn.Module):
    """One expert's own stages after the shared ones, then global average pooling."""

    def __init__(self, stages: nn.Sequential) -> None:
        super().__init__()
        self.stages = stages

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.stages(x), 1).flatten(1)


class ExpertsBackbone(nn.Module):
    """Shared stem, then each expert's branch; the features are the experts' pooled features side by side."""

    def __init__(self, shared: SharedStem, branches: list[ExpertBranch]) -> None:
        super().__init__()
        self.shared = shared
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        common = self.shared(x)
        return torch.cat([branch(common) for branch in self.branches], dim=1)


class ExpertHeads(nn.Module):
    """Each expert's classifier on its slice of the features, times `scale`; the output is their weighted sum
    with the `aggregation` weights: 1/E each (the mean, as RIDE and SADE predict) unless a method learns
    others (SADE's test-time aggregation sets them in place, so they travel with the model's state)."""

    def __init__(self, heads: list[nn.Module], expert_dim: int, scale: float) -> None:
        super().__init__()
        self.heads = nn.ModuleList(heads)
        self.expert_dim = expert_dim
        self.scale = scale
        self.register_buffer("aggregation", torch.full((len(heads),), 1.0 / len(heads)))

    def expert_logits(self, features: torch.Tensor) -> torch.Tensor:
        chunks = features.split(self.expert_dim, dim=1)
        return torch.stack([head(z) for head, z in zip(self.heads, chunks, strict=True)], dim=1) * self.scale

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = self.expert_logits(features)
        return (self.aggregation.to(logits.dtype)[None, :, None] * logits).sum(dim=1)

    def effective_weight(self) -> torch.Tensor:
        rows = [h.effective_weight() if hasattr(h, "effective_weight") else h.weight.detach() for h in self.heads]
        return torch.cat([w * a for w, a in zip(rows, self.aggregation, strict=True)], dim=1) * self.scale


class MultiExpertModel(LTModel):
    """Experts sharing early layers: `model(x)` their aggregated logits (the mean unless a method set other
    weights), `expert_logits(x)` each one's."""

    backbone: ExpertsBackbone
    head: ExpertHeads

    @property
    def num_experts(self) -> int:
        return len(self.head.heads)

    def expert_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Every expert's logits, B x E x C (already times the head's scale)."""
        return self.head.expert_logits(self.features(x))


def _init_convs(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)  # the official `_weights_init`, as ltbench's ResNet-32 does


def multi_expert_model(
    model: LTModel,
    num_experts: int,
    num_classes: int,
    width_factor: float = OFFICIAL_WIDTH_FACTOR,
    cosine: bool = True,
    scale: float = 30.0,
) -> MultiExpertModel:
    """RIDE's / SADE's network from a CIFAR-style ResNet `model` (ltbench's `resnet32`, `resnet-small-gray`):
    its stem and first stage shared, `num_experts` new copies of stages two and three at `width_factor` of
    their widths, each with a cosine (`cosine`, logits × `scale`) or linear (scale 1) classifier."""
    backbone = model.backbone
    if not isinstance(backbone, CifarResNetBackbone):
        raise LtbenchError(
            f"the multi-expert network splits a CIFAR-style ResNet (resnet32, resnet-small-gray) after its first "
            f"stage; this model's backbone is a {type(backbone).__name__}"
        )
    if num_experts < 1 or width_factor <= 0 or scale <= 0:
        raise LtbenchError(
            f"need num_experts >= 1, width_factor > 0, scale > 0: {num_experts}, {width_factor}, {scale}"
        )
    blocks = list(backbone.layers)
    per_stage = len(blocks) // 3
    stage1 = nn.Sequential(*blocks[:per_stage])
    shared = SharedStem(backbone.conv1, backbone.bn1, stage1)
    first_width = blocks[per_stage - 1].conv2.out_channels
    widths = [max(1, round(block.conv2.out_channels * width_factor)) for block in (blocks[per_stage], blocks[-1])]
    branches = []
    for _ in range(num_experts):
        layers, in_planes = [], first_width
        for planes in widths:
            for b in range(per_stage):
                layers.append(BasicBlock(in_planes, planes, 2 if b == 0 else 1))
                in_planes = planes
        branch = ExpertBranch(nn.Sequential(*layers))
        _init_convs(branch)
        branches.append(branch)
    expert_dim = widths[-1]
    heads: list[nn.Module] = []
    for _ in range(num_experts):
        if cosine:
            heads.append(CosineLinear(expert_dim, num_classes))
        else:
            linear = nn.Linear(expert_dim, num_classes)
            nn.init.kaiming_normal_(linear.weight)
            heads.append(linear)
    head = ExpertHeads(heads, expert_dim, scale if cosine else 1.0)
    return MultiExpertModel(ExpertsBackbone(shared, branches), expert_dim * num_experts, num_classes, head)
