"""CIFAR-style ResNets (He et al. 2016, section 4.2), as in LDAM-DRW's `resnet_cifar.py`.

A 3x3 stem, three stages of n basic blocks at 16/32/64 channels (stride 2 entering stages 2 and 3), global
average pooling. Depth = 6n + 2: ResNet-32 is n=5 (~0.46 M parameters). Shortcuts that change shape are
LDAM-DRW's option A: subsample by 2 and zero-pad the new channels, which adds no parameters.

`groups=K` builds K of these networks side by side as one (horizontal fusion, `harness.models.fused`): every
convolution a grouped convolution over K blocks of channels, every BatchNorm over K times the channels (so
each member keeps its own statistics), the shortcut padding each member's channels. Member k owns channels
[k*C, (k+1)*C) of every layer; nothing mixes members, so the K networks compute what they compute apart.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.models.base import MODELS, LTModel


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, groups: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(groups * in_planes, groups * planes, 3, stride, 1, bias=False, groups=groups)
        self.bn1 = nn.BatchNorm2d(groups * planes)
        self.conv2 = nn.Conv2d(groups * planes, groups * planes, 3, 1, 1, bias=False, groups=groups)
        self.bn2 = nn.BatchNorm2d(groups * planes)
        self.pad_channels = planes - in_planes
        self.subsample = stride != 1
        self.groups = groups

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.subsample:
            x = x[:, :, ::2, ::2]
        if not self.pad_channels:
            return x
        half = self.pad_channels // 2
        pad = (0, 0, 0, 0, half, self.pad_channels - half)
        if self.groups == 1:
            return F.pad(x, pad)
        # each member's channels padded on their own: (B, K*C) -> (B, K, C) -> pad C -> (B, K*C')
        return F.pad(x.unflatten(1, (self.groups, -1)), pad).flatten(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNetBackbone(nn.Module):
    def __init__(
        self, depth: int, in_channels: int = 3, widths: tuple[int, int, int] = (16, 32, 64), groups: int = 1
    ) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        self.depth, self.in_channels, self.widths, self.groups = depth, in_channels, widths, groups
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(groups * in_channels, groups * widths[0], 3, 1, 1, bias=False, groups=groups)
        self.bn1 = nn.BatchNorm2d(groups * widths[0])
        layers, in_planes = [], widths[0]
        for stage, planes in enumerate(widths):
            for block in range(n):
                layers.append(BasicBlock(in_planes, planes, 2 if stage > 0 and block == 0 else 1, groups))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.out_dim = widths[-1]  # per member: a fused backbone's features are (B, groups * out_dim)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


def cifar_resnet(
    depth: int, num_classes: int, in_channels: int, widths: tuple[int, int, int] = (16, 32, 64)
) -> LTModel:
    backbone = CifarResNetBackbone(depth, in_channels, widths)
    model = LTModel(backbone, backbone.out_dim, num_classes)
    nn.init.kaiming_normal_(model.head.weight)  # LDAM-DRW's _weights_init covers the classifier too
    return model


MODELS.register("resnet32", lambda num_classes, in_channels: cifar_resnet(32, num_classes, in_channels))
# The small default for 28x28 grayscale (Fashion-MNIST-LT): ResNet-8 (one block per stage) at half width
# (8/16/32 channels, 32-d features), sized so the quick suite's eleven methods train in minutes on two CPU
# cores; full width trains 2.7x slower there.
MODELS.register(
    "resnet-small-gray", lambda num_classes, in_channels: cifar_resnet(8, num_classes, in_channels, (8, 16, 32))
)
# ResNet-32 at four times the width (64/128/256 channels, 256-d features, ~7.4 M parameters): GLMC's official
# CIFAR "resnet32" (ynu-yangpeng/GLMC `ResNet_modify(BasicBlock_s, [5, 5, 5], nf=64)`), the same blocks and
# option-A shortcuts as `resnet32`.
MODELS.register(
    "resnet32-x4", lambda num_classes, in_channels: cifar_resnet(32, num_classes, in_channels, (64, 128, 256))
)
