"""RIDE's expert assignment: the router's loss against the official transcription, its routing, and a ride-ea
trial on a finished ride backbone."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from harness.experiment.plan import stage1_config
from harness.experiment.suite import build_suite
from harness.models import build_model
from harness.models.experts import multi_expert_model
from harness.records.storage import Storage
from methods.ride_ea import ExpertRouter, router_loss
from tests.conftest import write_tiny_suite
from tests.trial_runs import train


def official_ea_loss(expert_logits, expert_help_preds, target, pos_weight=100):
    """Transcribed from frank-xwang/RIDE-LongTailRecognition @ ab8be5c, model/ldam_drw_resnets/
    ea_resnet_cifar.py ResNet_s.forward at training time (the experts' logits given, B x E x C)."""
    num_experts = expert_logits.shape[1]
    output = expert_logits.new_zeros(expert_logits[:, 0].shape)
    correctness = output.new_zeros((output.size(0), num_experts), dtype=torch.bool)
    loss = output.new_zeros((1,))
    for i in range(num_experts):
        output += expert_logits[:, i]
        correctness[:, i] = output.argmax(dim=1) == target
    for i in range(num_experts - 1):
        expert_help_target = (~correctness[:, i]) & correctness[:, i + 1 :].any(dim=1)
        loss += F.binary_cross_entropy_with_logits(
            expert_help_preds[:, i], expert_help_target.float(), pos_weight=expert_help_preds.new_tensor([pos_weight])
        )
    return output / num_experts, loss / (num_experts - 1)


def test_the_router_loss_is_the_official_one() -> None:
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(16, 3, 5, generator=g) * 10
    preds = torch.randn(16, 2, generator=g)
    targets = torch.randint(0, 5, (16,), generator=g)
    _, expected = official_ea_loss(logits, preds, targets)
    got = router_loss(logits.cumsum(1), preds, targets, 100.0)
    torch.testing.assert_close(got, expected.squeeze())
    assert not torch.isclose(router_loss(logits.cumsum(1), preds, targets, 1.0), got)


def test_routing_uses_the_first_expert_alone_or_more_and_the_mean_of_those_used() -> None:
    torch.manual_seed(0)
    model = multi_expert_model(build_model("resnet32", 10, 3), 3, 10).eval()
    router = ExpertRouter(model.head, top_k=5).eval()
    features = model.features(torch.randn(6, 3, 32, 32))
    z = model.head.expert_logits(features)
    with torch.no_grad():
        router.decide.bias.fill_(-1e6)  # never call the next expert: expert 0 alone
        torch.testing.assert_close(router(features), z[:, 0])
        router.decide.bias.fill_(1e6)  # always: the mean of all three, the ride prediction
        torch.testing.assert_close(router(features), z.mean(1))
    assert (router.last_used == 3).all()
    assert not any(p.requires_grad for p in router.experts.parameters())


def test_ride_ea_trains_its_router_on_a_finished_ride_backbone(tmp_path: Path, fake_fashion_root: Path) -> None:
    recipe = {"base": "quick", "epochs": 2, "batch_size": 32, "eval_every": 1}
    suite = write_tiny_suite(
        tmp_path / "s.yaml",
        fake_fashion_root,
        recipe=recipe,
        methods=["ride-ea"],
        method_params={"ride-ea": {"epochs": 1, "batch_size": 32}},
    )
    cfg = build_suite(str(suite)).trials[0]
    storage = Storage.open(tmp_path / "store")
    train(stage1_config(cfg), storage)  # the ride backbone
    result = train(cfg, storage)
    assert 1.0 <= result["metrics"]["experts_per_image"] <= 3.0
    assert "all" in result["variants"] and 0 <= result["metrics"]["test_top1"] <= 1
