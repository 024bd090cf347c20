"""LDAM-DRW, CE-DRW, focal, class-balanced loss, Balanced Softmax and Weight Balancing: each loss against a
case computed by hand, the DRW schedule, MaxNorm's projection and the hooks the trainer calls."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from harness.plugins.loading import build_method, load_methods
from harness.plugins.losses import effective_number_weights
from harness.plugins.method import MethodContext


def context(counts: list[float]) -> MethodContext:
    return MethodContext(len(counts), torch.tensor(counts, dtype=torch.float64))


def test_effective_number_weights_by_hand() -> None:
    # β = 0.5, n = (2, 1): (1-β)/(1-β^n) = (2/3, 1), normalised to sum to C = 2: (0.8, 1.2)
    assert torch.allclose(effective_number_weights(torch.tensor([2.0, 1.0]), 0.5), torch.tensor([0.8, 1.2]))
    # β = 0 gives every class weight 1 (DRW before its start epoch)
    assert torch.equal(effective_number_weights(torch.tensor([5000.0, 50.0]), 0.0), torch.ones(2))


def test_ldam_margins_scale_and_cosine_head_by_hand() -> None:
    method = build_method("ldam-drw", {}, context([16, 1]))
    # n^(-1/4) = (0.5, 1), rescaled so the largest margin is 0.5
    assert torch.allclose(method.margins, torch.tensor([0.25, 0.5]))
    cosines, target = torch.tensor([[0.2, 0.1]]), torch.tensor([0])
    # s·(cos - Δ_y onehot) = 30·(0.2 - 0.25, 0.1) = (-1.5, 3.0); CE = log(1 + e^4.5)
    assert method.loss(cosines, target).item() == pytest.approx(math.log1p(math.exp(4.5)), rel=1e-6)
    head = method.build_head(3, 2)
    z = torch.tensor([[3.0, 0.0, 4.0]])
    expected = F.normalize(z, dim=1) @ F.normalize(head.weight, dim=1).T
    assert torch.allclose(head(z), expected) and head(z).abs().max() <= 1


@pytest.mark.parametrize("name", ["ldam-drw", "ce-drw"])
def test_drw_weights_before_and_after_the_start_epoch(name: str) -> None:
    counts = [16, 1]
    method = build_method(name, {"beta": 0.5}, context(counts))
    logits, targets = torch.tensor([[0.3, -0.2], [0.1, 0.4]]), torch.tensor([0, 1])
    method.on_epoch_start(159, 200)
    assert method.class_weights is None
    before = method.loss(logits, targets)
    method.on_epoch_start(160, 200)
    raw = torch.tensor([0.5 / (1 - 0.5**16), 0.5 / 0.5])
    w = raw / raw.sum() * 2
    assert torch.allclose(method.class_weights, w)
    after = method.loss(logits, targets)
    method.class_weights = None
    terms = torch.stack([method.loss(logits[i : i + 1], targets[i : i + 1]) for i in range(2)])
    assert before.item() == pytest.approx(terms.mean().item(), rel=1e-6)
    # PyTorch's weighted mean, as the official code: Σ w_y ℓ / Σ w_y
    assert after.item() == pytest.approx(((w * terms).sum() / w.sum()).item(), rel=1e-6)


def test_drw_start_scales_with_the_recipe() -> None:
    params = load_methods().get("ce-drw").Params()
    assert params.start_epoch(200) == 160  # LDAM-DRW's schedule
    assert params.start_epoch(12) == 10  # the quick recipe: the last fifth, as on 200 epochs
    assert load_methods().get("ce-drw").Params(drw_epoch=9, schedule_epochs=12).start_epoch(12) == 9


def test_focal_loss_by_hand() -> None:
    method = build_method("focal", {"gamma": 2.0}, context([3, 1]))
    logits, target = torch.tensor([[math.log(3.0), 0.0]]), torch.tensor([0])  # p_y = 3/4
    assert method.loss(logits, target).item() == pytest.approx(0.25**2 * -math.log(0.75), rel=1e-6)
    assert build_method("focal", {"gamma": 0.0}, context([3, 1])).loss(logits, target).item() == pytest.approx(
        -math.log(0.75), rel=1e-6
    )


def test_class_balanced_loss_softmax_and_focal_by_hand() -> None:
    logits, targets = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]]), torch.tensor([0, 1])
    ce = torch.tensor([-math.log(0.75), math.log(2.0)])
    w = torch.tensor([0.8, 1.2])  # counts (2, 1), β = 0.5
    softmax = build_method("cb", {"beta": 0.5}, context([2, 1]))
    assert softmax.loss(logits, targets).item() == pytest.approx(((w * ce).sum() / 2).item(), rel=1e-6)
    focal = build_method("cb", {"beta": 0.5, "form": "focal", "gamma": 1.0}, context([2, 1]))
    modulated = torch.tensor([0.25, 0.5]) * ce
    assert focal.loss(logits, targets).item() == pytest.approx(((w * modulated).sum() / 2).item(), rel=1e-6)


def test_balanced_softmax_is_the_la_loss_at_tau_one() -> None:
    ctx = context([90, 9, 1])
    logits = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0])
    balanced = build_method("balanced-softmax", {}, ctx).loss(logits, targets)
    by_hand = F.cross_entropy(logits + torch.log(torch.tensor([0.9, 0.09, 0.01])), targets)
    assert balanced.item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert balanced.item() == pytest.approx(build_method("la", {"tau": 1.0}, ctx).loss(logits, targets).item())


def test_wb_class_balanced_loss_is_the_demos_bce_on_softmax() -> None:
    method = build_method("wb", {"beta": 0.5}, context([2, 1]))
    # softmax(0, 0) = (1/2, 1/2): both BCE entries are ln 2, weighted by w_y = 0.8, averaged over B·C entries
    assert method.loss(torch.zeros(1, 2), torch.tensor([0])).item() == pytest.approx(0.8 * math.log(2), rel=1e-6)
    cui = build_method("wb", {"beta": 0.5, "loss": "softmax"}, context([2, 1]))
    assert cui.loss(torch.zeros(1, 2), torch.tensor([1])).item() == pytest.approx(1.2 * math.log(2), rel=1e-6)


def test_maxnorm_keeps_every_class_norm_within_the_threshold_after_each_step() -> None:
    from harness.data.samplers import make_sampler
    from harness.training.decoupled import FeatureBatches
    from harness.training.loop import Learner, train_epoch
    from harness.training.optim import make_optimizer, make_scheduler
    from harness.training.recipes import Recipe
    from methods.wb import MaxNorm

    g = torch.Generator().manual_seed(0)
    features, labels = torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g)
    head = torch.nn.Linear(5, 3)
    with torch.no_grad():
        head.weight.mul_(torch.tensor([[4.0], [1.0], [0.5]]))
    projection = MaxNorm.relative_to(head.weight, 0.1)
    norms = head.weight.detach().norm(dim=1)
    assert projection.radius == pytest.approx(float(norms.min() + 0.1 * (norms.max() - norms.min())))
    recipe = Recipe(epochs=1, batch_size=16, lr=5.0, schedule="constant")
    optimizer = make_optimizer(head.parameters(), recipe)
    seen: list[torch.Tensor] = []

    def after_step() -> None:
        projection.project(head.weight)
        seen.append(head.weight.detach().norm(dim=1).clone())

    sampler = make_sampler("instance", labels.numpy(), 3, 16)
    learner = Learner(head, F.cross_entropy, optimizer, make_scheduler(optimizer, recipe, 4), after_step=after_step)
    train_epoch(learner, FeatureBatches(features, labels), sampler.epoch_indices(0, 1, g), 16, g)
    assert len(seen) == 4  # once after each of the 4 steps
    assert all((n <= projection.radius * (1 + 1e-6)).all() for n in seen)
    absolute = MaxNorm(0.1)
    absolute.project(head.weight)
    assert (head.weight.norm(dim=1) <= 0.1 + 1e-7).all()


def test_a_plugin_sampler_is_registered_from_its_method_file() -> None:
    from harness.data.samplers import SAMPLERS, make_sampler
    from methods.channel_whitening import B3RSSampler, BETSampler

    load_methods()
    assert SAMPLERS.get("b3rs") is B3RSSampler and SAMPLERS.get("bet") is BETSampler
    assert isinstance(make_sampler("b3rs", torch.arange(10).numpy() % 2, 2, 4), B3RSSampler)


def test_the_new_methods_are_registered_with_their_kinds() -> None:
    methods = load_methods()
    for name in ("ldam-drw", "ce-drw", "focal", "cb", "balanced-softmax"):
        assert methods.get(name).stage1 is None
    assert methods.get("wb").stage1 == "ce" and methods.get("wb").Params().stage1_recipe == "wb-stage1"


def test_built_in_methods_import_only_the_public_plugin_api() -> None:
    import re
    from pathlib import Path

    methods_dir = Path(__file__).resolve().parents[2] / "methods"
    for path in methods_dir.glob("*.py"):
        harness_imports = set(re.findall(r"^from (harness[\w.]*) import", path.read_text(), flags=re.M))
        assert harness_imports <= {"harness.api"}, f"{path.name} imports {harness_imports}"
