"""torchvision's ResNet-50 and ResNeXt-50 32x4d for ImageNet-LT, split into backbone and head.

Weights start from scratch (Kang et al. train from scratch on ImageNet-LT; pretrained weights would leak the
balanced ImageNet-1k).
"""

from __future__ import annotations

from torch import nn

from harness.models.base import MODELS, LTModel


def torchvision_resnet(arch: str, num_classes: int, in_channels: int) -> LTModel:
    import torchvision.models as tvm

    net = getattr(tvm, arch)(weights=None)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    return LTModel(net, feature_dim, num_classes)


MODELS.register("resnet50", lambda num_classes, in_channels: torchvision_resnet("resnet50", num_classes, in_channels))
MODELS.register(
    "resnext50-32x4d",
    lambda num_classes, in_channels: torchvision_resnet("resnext50_32x4d", num_classes, in_channels),
)
