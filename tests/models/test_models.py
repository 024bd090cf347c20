"""Backbones: shapes, feature sizes, parameter counts, and the separate linear head."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.models import MODELS, build_model
from harness.models.base import count_parameters


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of the conv and linear layers for one forward pass of a single image."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += output[0].numel() * k
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total


def test_registered():
    for name in ("resnet32", "resnet-small-gray", "resnet50", "resnext50-32x4d"):
        assert name in MODELS


def test_resnet32_parameters_and_structure():
    model = build_model("resnet32", 10, 3)
    assert count_parameters(model) == 464_154  # ~0.46 M, LDAM-DRW's ResNet-32 on CIFAR-10
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 31  # stem + 3 stages x 5 blocks x 2
    assert [c.out_channels for c in convs][:1] == [16]
    assert sorted({c.out_channels for c in convs}) == [16, 32, 64]
    assert all(c.kernel_size == (3, 3) for c in convs)
    # option-A shortcuts: no 1x1 projection convs, the only Linear is the head
    assert [m for m in model.modules() if isinstance(m, nn.Linear)] == [model.head]
    # 100 classes: only the head grows (64 * 90 more weights + 90 biases)
    assert count_parameters(build_model("resnet32", 100, 3)) == 464_154 + 90 * 65


def test_resnet32_macs():
    model = build_model("resnet32", 10, 3).eval()
    macs = _macs(model, torch.zeros(1, 3, 32, 32))
    assert macs == pytest.approx(69e6, rel=0.02)


def test_resnet32_shapes():
    model = build_model("resnet32", 7, 3).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        feats = model.features(x)
        logits = model(x)
    assert model.feature_dim == 64
    assert feats.shape == (4, 64)
    assert logits.shape == (4, 7)
    assert torch.allclose(logits, model.head(feats))
    # features come after a ReLU and global average pooling
    assert (feats >= 0).all()


def test_resnet_small_gray():
    model = build_model("resnet-small-gray", 10, 1).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        feats = model.features(x)
        logits = model(x)
    assert feats.shape == (3, model.feature_dim)
    assert logits.shape == (3, 10)
    assert model.backbone.conv1.in_channels == 1
    assert count_parameters(model) < count_parameters(build_model("resnet32", 10, 1))


@pytest.mark.parametrize("name", ["resnet50", "resnext50-32x4d"])
def test_torchvision_backbones(name):
    model = build_model(name, 13, 3).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = model.features(x)
        logits = model(x)
    assert model.feature_dim == 2048
    assert feats.shape == (1, 2048)
    assert logits.shape == (1, 13)
    assert torch.allclose(logits, model.head(feats), atol=1e-5)
    # the torchvision fc is gone from the backbone; the only Linear is the separate head
    assert isinstance(model.backbone.fc, nn.Identity)
    assert [m for m in model.modules() if isinstance(m, nn.Linear)] == [model.head]


def test_resnext_is_grouped():
    model = build_model("resnext50-32x4d", 10, 3)
    assert any(isinstance(m, nn.Conv2d) and m.groups == 32 for m in model.modules())
    plain = build_model("resnet50", 10, 3)
    assert all(m.groups == 1 for m in plain.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize(("name", "dim"), [("resnet32", 64), ("resnet-small-gray", 32), ("resnet50", 2048)])
def test_head_is_separate_linear(name, dim):
    model = build_model(name, 5, 3)
    assert isinstance(model.head, nn.Linear)
    assert model.head.in_features == dim
    assert model.head.out_features == 5
    assert model.head.bias is not None
    head_params = {id(p) for p in model.head.parameters()}
    assert not head_params & {id(p) for p in model.backbone.parameters()}
    # replacing the head changes the output without touching the backbone
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model.features(x)
        model.head = nn.Linear(dim, 3)
        after = model.features(x)
        assert model(x).shape == (2, 3)
    assert torch.equal(before, after)


def test_menon_resnet32_is_their_code_s_bottleneck_variant():
    """google-research logit_adjustment/models.py: pad 3 + 3x3 valid stem (36x36 maps), three stages of five
    1x1-3x3-1x1 blocks at 16/32/64, projection shortcut in each stage's first block, a final BatchNorm, and a
    dense head N(0, 0.01²). Parameters counted by hand from that file: 300,762 for 10 classes."""
    model = build_model("resnet32-menon", 10, 3)
    assert count_parameters(model) == 300_762
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 15 * 3 + 3  # stem, three per block, three projection shortcuts
    assert sorted({c.kernel_size for c in convs}) == [(1, 1), (3, 3)]
    sizes = []
    for block in model.backbone.layers:
        block.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
    features = model.features(torch.randn(2, 3, 32, 32))
    assert features.shape == (2, 64) and sizes[0] == 36 and sizes[5] == 18 and sizes[-1] == 9
    assert isinstance(model.backbone.final_bn, nn.BatchNorm2d)
    assert float(model.head.weight.detach().std()) == pytest.approx(0.01, rel=0.2) and not model.head.bias.any()
    # TensorFlow's "same" for the strided 3x3 on an even map: one row and column after, none before
    strided = model.backbone.layers[5]
    padded = strided.same_padding(torch.ones(1, 1, 36, 36))
    assert padded.shape[-1] == 37 and padded[0, 0, 0, 0] == 1 and padded[0, 0, -1, -1] == 0
