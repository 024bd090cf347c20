"""The CIFAR "ResNet-32" of Menon et al.'s code (google-research `logit_adjustment/models.py`), model
`resnet32-menon`.

It is not LDAM-DRW's ResNet-32 (`resnet32`): the stem zero-pads by 3 and applies a 3x3 convolution without
padding (so the first stage works on 36x36 maps); each of the three stages (16/32/64 channels, stride 1/2/2)
is five bottleneck-shaped blocks of 1x1-3x3-1x1 convolutions, all at the stage's width, the first with a 1x1
convolution + BatchNorm shortcut and the rest with identity shortcuts; after the last stage a final BatchNorm
(no ReLU), global average pooling and the dense classifier. As Keras: He-normal (truncated) convolution
weights, the classifier N(0, 0.01²) with zero bias, BatchNorm momentum 0.9 (PyTorch's 0.1) and ε 1e-5, and
TensorFlow's "same" padding for the strided 3x3 (one row and column after, none before).

Remaining difference: the code feeds images as x/255 - 0.5; ltbench normalises by the dataset's per-channel
mean and standard deviation, as for every model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from harness.models.base import MODELS, LTModel

KERAS_TRUNCATION = 0.87962566103423978  # std of a unit normal truncated at ±2; Keras divides by it


def keras_he_normal_(weight: torch.Tensor) -> None:
    """Keras' `he_normal`: a normal truncated at 2 standard deviations, std sqrt(2 / fan_in) after truncation."""
    fan_in = weight[0].numel()
    std = math.sqrt(2.0 / fan_in) / KERAS_TRUNCATION
    nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)


class BottleneckBlock(nn.Module):
    """1x1, 3x3 (stride), 1x1 at one width; the shortcut a strided 1x1 convolution + BatchNorm when `project`."""

    def __init__(self, in_planes: int, planes: int, stride: int, project: bool) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(in_planes, planes, 1, bias=False), batch_norm(planes)
        self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, stride, 0, bias=False), batch_norm(planes)
        self.conv3, self.bn3 = nn.Conv2d(planes, planes, 1, bias=False), batch_norm(planes)
        self.stride = stride
        self.shortcut = (
            nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), batch_norm(planes))
            if project
            else nn.Identity()
        )

    def same_padding(self, x: torch.Tensor) -> torch.Tensor:
        """TensorFlow's "same" padding of a 3x3 convolution: total 2 (stride 1) or 1 (stride 2, even size),
        the odd row and column after."""
        total = max(3 - self.stride, 0) if x.shape[-1] % self.stride == 0 else 3 - 1
        before = total // 2
        return F.pad(x, (before, total - before, before, total - before))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(self.same_padding(out))))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class MenonResNetBackbone(nn.Module):
    def __init__(self, in_channels: int = 3, blocks: int = 5, widths: tuple[int, ...] = (16, 32, 64)) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 0, bias=False)
        self.stem_bn = batch_norm(widths[0])
        layers, in_planes = [], widths[0]
        for stage, planes in enumerate(widths):
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(BottleneckBlock(in_planes, planes, stride, project=block == 0))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.final_bn = batch_norm(in_planes)
        self.out_dim = in_planes
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                keras_he_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.stem_bn(self.stem(F.pad(x, (3, 3, 3, 3)))))
        out = self.final_bn(self.layers(out))
        return out.mean(dim=(2, 3))


def menon_resnet32(num_classes: int, in_channels: int) -> LTModel:
    backbone = MenonResNetBackbone(in_channels)
    model = LTModel(backbone, backbone.out_dim, num_classes)
    nn.init.normal_(model.head.weight, std=0.01)
    nn.init.zeros_(model.head.bias)
    return model


MODELS.register("resnet32-menon", menon_resnet32)
