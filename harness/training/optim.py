"""SGD with momentum and the per-iteration learning-rate schedule (warm-up, then step or cosine)."""

from __future__ import annotations

import math

import torch

from harness.training.recipes import Recipe


def lr_factor(recipe: Recipe, epoch_progress: float) -> float:
    """Multiplier of the base lr at a fractional epoch (epoch index + fraction of the epoch done)."""
    if recipe.warmup_epochs > 0 and epoch_progress < recipe.warmup_epochs:
        return (epoch_progress + 1e-8) / recipe.warmup_epochs
    if recipe.schedule == "step":
        return recipe.step_gamma ** sum(epoch_progress >= m for m in recipe.milestones)
    if recipe.schedule == "cosine":
        span = max(recipe.epochs - recipe.warmup_epochs, 1e-8)
        t = min(max(epoch_progress - recipe.warmup_epochs, 0.0) / span, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * t))
    return 1.0


def make_optimizer(params, recipe: Recipe) -> torch.optim.Optimizer:
    optimizer = torch.optim.SGD(
        params,
        lr=recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
        nesterov=recipe.nesterov,
    )
    return optimizer


def make_scheduler(
    optimizer: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per iteration, so warm-up and cosine are smooth within an epoch."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(recipe, step / steps_per_epoch))
