"""The multi-expert network of RIDE and SADE: shared stem and first stage, each expert's own later stages."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.core.errors import LtbenchError
from harness.models import build_model
from harness.models.experts import CosineLinear, MultiExpertModel, multi_expert_model


def experts(num: int = 3, name: str = "resnet32", classes: int = 10, channels: int = 3) -> MultiExpertModel:
    torch.manual_seed(0)
    return multi_expert_model(build_model(name, classes, channels), num, classes)


def test_the_shared_layers_are_the_backbones_own_one_parameter_set() -> None:
    torch.manual_seed(0)
    base = build_model("resnet32", 10, 3)
    model = multi_expert_model(base, 3, 10)
    shared = model.backbone.shared
    assert shared.conv1 is base.backbone.conv1 and shared.bn1 is base.backbone.bn1
    assert all(a is b for a, b in zip(shared.stage1, list(base.backbone.layers)[:5], strict=True))
    # every expert sees the one shared parameter set: it appears once among the model's parameters
    ids = [id(p) for p in model.parameters()]
    assert len(ids) == len(set(ids))
    assert id(shared.conv1.weight) in ids


def test_each_expert_has_distinct_later_stages_and_head_at_the_official_widths() -> None:
    model = experts()
    branches, heads = model.backbone.branches, model.head.heads
    assert len(branches) == len(heads) == 3
    params = [
        {id(p) for p in b.parameters()} | {id(p) for p in h.parameters()} for b, h in zip(branches, heads, strict=True)
    ]
    assert not (params[0] & params[1]) and not (params[1] & params[2]) and not (params[0] & params[2])
    assert not torch.equal(branches[0].stages[0].conv1.weight, branches[1].stages[0].conv1.weight)
    widths = [m.out_channels for m in branches[0].stages.modules() if isinstance(m, nn.Conv2d)]
    assert widths == [24] * 10 + [48] * 10  # reduce_dimension: 5 blocks of 24, then 5 of 48 channels
    assert all(isinstance(h, CosineLinear) for h in heads)
    assert model.feature_dim == 3 * 48 and model.num_experts == 3


def test_forward_is_the_mean_of_the_experts_scaled_cosine_logits() -> None:
    model = experts().eval()
    x = torch.randn(4, 3, 32, 32)
    per = model.expert_logits(x)
    assert per.shape == (4, 3, 10)
    torch.testing.assert_close(model(x), per.mean(1))
    assert per.abs().max() <= 30.0 + 1e-4  # s · cos, s = 30
    torch.testing.assert_close(model.head(model.features(x)), model(x))  # still features, then the head


def test_a_gradient_of_one_expert_reaches_the_shared_layers_but_not_the_other_experts() -> None:
    model = experts()
    model.expert_logits(torch.randn(2, 3, 32, 32))[:, 0].sum().backward()
    assert model.backbone.shared.conv1.weight.grad is not None
    assert model.backbone.branches[0].stages[0].conv1.weight.grad is not None
    other = model.backbone.branches[1].stages[0].conv1.weight.grad
    assert other is None or not other.any()


def test_the_small_gray_backbone_splits_too_and_other_backbones_are_refused() -> None:
    model = experts(2, "resnet-small-gray", 10, 1)
    assert model.expert_logits(torch.randn(2, 1, 28, 28)).shape == (2, 2, 10)
    assert model.feature_dim == 2 * 24  # 32 channels x 0.75
    base = build_model("resnet32", 10, 3)
    base.backbone = nn.Flatten()
    with pytest.raises(LtbenchError, match="CIFAR-style ResNet"):
        multi_expert_model(base, 3, 10)


def test_aggregation_weights_change_the_prediction_and_the_effective_weight() -> None:
    model = experts().eval()
    x = torch.randn(3, 3, 32, 32)
    model.head.aggregation.copy_(torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(model(x), model.expert_logits(x)[:, 0])
    weight = model.head.effective_weight()
    assert weight.shape == (10, 3 * 48)
    assert weight[:, 48:].abs().max() == 0 and torch.allclose(weight[:, :48].norm(dim=1), torch.full((10,), 30.0))
    assert "head.aggregation" in model.state_dict()  # learned weights travel with the model's state
