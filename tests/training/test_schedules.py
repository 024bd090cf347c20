"""The learning-rate schedules and weight decay as the official codes run them (issue 24, items 4, 5 and 7)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from harness.core.errors import LtbenchError
from harness.models import build_model
from harness.training.optim import lr_factor, make_optimizer, make_scheduler, parameter_groups
from harness.training.recipes import RECIPES, Recipe


def lrs_at_steps(recipe: Recipe, steps_per_epoch: int, steps: list[int]) -> list[float]:
    """The lr each of `steps` (0-based iterations) trains with, read from a real optimiser and scheduler."""
    optimizer = make_optimizer([nn.Parameter(torch.zeros(1))], recipe)
    scheduler = make_scheduler(optimizer, recipe, steps_per_epoch)
    out = []
    for step in range(max(steps) + 1):
        if step in steps:
            out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_cifar_lt_warms_up_per_epoch_as_ldam_drw_adjust_learning_rate() -> None:
    """LDAM-DRW sets lr·(e+1)/5 at the start of epoch e < 5 (0.02, 0.04, ... 0.1), held for the epoch."""
    recipe = RECIPES.get("cifar-lt")
    spe = 10
    first_steps = [e * spe for e in range(6)]
    assert lrs_at_steps(recipe, spe, first_steps) == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1, 0.1])
    assert lrs_at_steps(recipe, spe, [5, 9]) == pytest.approx([0.02, 0.02])  # constant within the epoch
    # x0.01 from epoch 160 and x0.0001 from 180 (the code's `epoch > 160` on e+1)
    factors = [lr_factor(recipe, e) for e in (159, 160, 179, 180, 199)]
    assert factors == pytest.approx([1.0, 0.01, 0.01, 1e-4, 1e-4])


def test_imagenet_lt_cosine_is_stepped_at_the_start_of_each_epoch() -> None:
    """Kang's CosineAnnealingLR is stepped before each epoch: epoch e trains at ½(1+cos(π(e+1)/T)) all epoch."""
    recipe = RECIPES.get("imagenet-lt")
    spe, total = 4, recipe.epochs
    expected = [0.2 * 0.5 * (1 + math.cos(math.pi * (e + 1) / total)) for e in (0, 0, 44, total - 1)]
    got = lrs_at_steps(recipe, spe, [0, 3, 44 * spe + 2, (total - 1) * spe + 1])
    assert got == pytest.approx(expected, abs=1e-12)


def test_menon_code_recipes_follow_their_learning_rate_schedule() -> None:
    """google-research logit_adjustment: lr 0.1·epoch/20 per step over the first 20 (22) epochs, then x0.1
    at each of three milestones, about 120K steps of batch 128 in all, Nesterov momentum."""
    c10, c100 = RECIPES.get("menon2021-cifar10-code"), RECIPES.get("menon2021-cifar100-code")
    assert (c10.epochs, c100.epochs) == (1241, 1419)
    assert c10.epochs * (12406 // 128) == pytest.approx(120_000, rel=0.01)
    assert c10.nesterov and c10.weight_decay == 2e-4 and c10.weight_decay_on == "non-bn"
    spe = 96
    assert lrs_at_steps(c10, spe, [48, 10 * spe])[0] == pytest.approx(0.1 * 0.5 / 20)  # half an epoch in
    assert lrs_at_steps(c10, spe, [10 * spe])[0] == pytest.approx(0.1 * 10 / 20)
    assert [lr_factor(c10, e) for e in (603.9, 604, 926, 1128)] == pytest.approx([1.0, 0.1, 0.01, 0.001])
    assert [lr_factor(c100, e) for e in (21.5, 22, 691, 1059, 1290)] == pytest.approx(
        [21.5 / 22, 1.0, 0.1, 0.01, 0.001]
    )
    # the paper's Appendix D recipe stays available under its own name: 200 epochs, x0.1 at 160 and 180
    paper = RECIPES.get("menon2021-cifar")
    assert (paper.epochs, paper.milestones, paper.step_gamma, paper.weight_decay) == (200, (160, 180), 0.1, 1e-4)


def test_non_bn_weight_decay_leaves_batchnorm_alone() -> None:
    model = build_model("resnet32", 10, 3)
    recipe = RECIPES.get("menon2021-cifar10-code")
    groups = make_optimizer(parameter_groups(model, recipe), recipe).param_groups
    decayed, free = groups
    assert decayed["weight_decay"] == 2e-4 and free["weight_decay"] == 0.0
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert {id(p) for m in norms for p in m.parameters()} == {id(p) for p in free["params"]}
    assert len(decayed["params"]) + len(free["params"]) == len(list(model.parameters()))
    assert len(parameter_groups(model, RECIPES.get("cifar-lt"))) == 1


def test_recipe_choices_are_checked() -> None:
    with pytest.raises(LtbenchError, match="lr_update"):
        RECIPES.get("quick").override(lr_update="per-batch")
    with pytest.raises(LtbenchError, match="keep"):
        RECIPES.get("quick").override(keep="best-test")
