"""Horizontal fusion: K CIFAR ResNets of one architecture trained as one network (issue 19, item 3).

A group of trials in one process steps K small models in turn; each step is a few hundred small kernels, so
on a GPU the host's launches, not the arithmetic, set the pace. Fused, the K models are one network whose
every layer is one kernel over all K: a grouped convolution (`groups=K`), a BatchNorm over K times the
channels (each member's channels keep their own statistics), and a grouped linear head. HFTA (Wang et al.,
MLSys 2021) reports up to 15x over one job per GPU this way.

It is the same computation, not an approximation: member k owns channels [k*C, (k+1)*C) of every layer and
nothing mixes members. The images go in as (K, B, C, H, W), member k's batch at [k], and the scores come out
as (K, B, classes). With the members' losses summed, each member's parameters get exactly the gradient of its
own loss, and SGD (momentum, weight decay) is elementwise, so one optimiser over the fused parameters updates
each member as its own optimiser would, given the same learning rate. A grouped convolution may use other
kernels than K separate ones, so results agree within float rounding, not bit for bit
(`tests/models/test_fused.py` bounds it on the CPU, and a `gpu` test on CUDA).

What it is for today: `ltbench bench --grouping` measures a fused group against the same K trials stepping in
turn (eager, captured, on streams). The trainer does not fuse trials: that waits for a GPU run to show fusion
faster than streams (docs/gpu-checks.md), and would need every trial of a group to step in lockstep (the same
sampler length and schedule), which `harness.training.group` does not ask of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from harness.models.base import LTModel
from harness.models.resnet_cifar import CifarResNetBackbone


class GroupedLinear(nn.Module):
    """K linear layers side by side: (B, K * in) -> (B, K, out), member k's weight at `weight[k]`."""

    def __init__(self, groups: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.groups, self.in_features = groups, in_features
        self.weight = nn.Parameter(torch.empty(groups, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(groups, out_features))
        bound = 1 / math.sqrt(in_features)  # nn.Linear's default, per member
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unflatten(1, (self.groups, self.in_features))  # (B, K, in)
        return torch.einsum("bki,koi->bko", x, self.weight) + self.bias


class FusedCifarResNet(nn.Module):
    """K `cifar_resnet` models as one: `forward` maps (K, B, C, H, W) images to (K, B, classes) scores."""

    def __init__(self, backbone: CifarResNetBackbone, num_classes: int) -> None:
        super().__init__()
        self.groups = backbone.groups
        self.backbone = backbone
        self.head = GroupedLinear(self.groups, backbone.out_dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        k = images.shape[0]
        if k != self.groups:
            raise ValueError(f"a fused group of {self.groups} models was given images for {k}")
        x = images.transpose(0, 1).flatten(1, 2)  # (B, K*C, H, W): member k's channels are block k
        if self.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)  # the layout the model was moved to
        return self.head(self.backbone(x)).transpose(0, 1)  # (K, B, classes)


def stacked_cross_entropy(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The K members' mean cross-entropies, summed: (K, B, classes) scores and (K, B) targets. Summed, each
    member's parameters get the gradient of its own mean loss, as when it trains alone."""
    losses = F.cross_entropy(scores.flatten(0, 1), targets.flatten(), reduction="none")
    return losses.view(targets.shape).mean(dim=1).sum()


def _architecture(model: LTModel) -> tuple | None:
    """What two models must share to be fused (depth, input channels, widths, classes), or None where `model`
    is not a plain CIFAR ResNet with a linear head."""
    backbone = model.backbone
    if not isinstance(backbone, CifarResNetBackbone) or backbone.groups != 1 or type(model.head) is not nn.Linear:
        return None
    return backbone.depth, backbone.in_channels, backbone.widths, model.head.out_features


def fuse(models: Sequence[LTModel]) -> FusedCifarResNet:
    """One fused network holding copies of `models`' parameters and BatchNorm statistics (all CIFAR ResNets
    with a linear head, of one depth, width and class count; each keeps its own values)."""
    shapes = [_architecture(m) for m in models]
    if None in shapes:
        kinds = sorted({f"{type(m.backbone).__name__} + {type(m.head).__name__}" for m in models})
        raise TypeError(f"fusion needs CIFAR ResNets with a linear head (harness.models.resnet_cifar), got {kinds}")
    if len(set(shapes)) > 1:
        raise ValueError("fused models must share depth, input channels, widths and classes")
    depth, in_channels, widths, classes = shapes[0]
    backbone = CifarResNetBackbone(depth, in_channels, widths, groups=len(models))
    like = next(models[0].parameters())
    fused = FusedCifarResNet(backbone, classes).to(like.device, like.dtype)
    fused.load_state_dict(fused_state([m.state_dict() for m in models], fused.state_dict()))
    return fused


def fused_state(members: Sequence[dict[str, torch.Tensor]], fused: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The fused network's state from its members' (same keys): a tensor K times longer in its first dim is
    the members' concatenated, one with a leading K dim their stack, a scalar (BatchNorm's step count) the
    first member's (every member of a group has taken the same steps)."""
    out = {}
    for key, target in fused.items():
        parts = [m[key] for m in members]
        if target.dim() == 0:
            out[key] = parts[0].clone()
        elif target.dim() == parts[0].dim() + 1:
            out[key] = torch.stack(parts)
        else:
            out[key] = torch.cat(parts)
    return out


def member_states(fused: FusedCifarResNet) -> list[dict[str, torch.Tensor]]:
    """The inverse of `fuse`: each member's state dict, loadable into its own unfused model."""
    k = fused.groups
    members: list[dict[str, torch.Tensor]] = [{} for _ in range(k)]
    for key, value in fused.state_dict().items():
        parts = [value] * k if value.dim() == 0 else list(value.chunk(k))
        if key.startswith("head."):  # stacked, not concatenated: drop the leading member dim
            parts = [p.squeeze(0) for p in parts]
        for member, part in zip(members, parts, strict=True):
            member[key] = part.clone()
    return members
