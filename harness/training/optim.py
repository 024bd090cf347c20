"""SGD with momentum and the learning-rate schedule (warm-up, then step or cosine), per step or per epoch."""

from __future__ import annotations

import math

import torch
from torch import nn

from harness.training.recipes import Recipe


def lr_factor(recipe: Recipe, epoch_progress: float) -> float:
    """Multiplier of the base lr at a fractional epoch (epoch index + fraction of the epoch done).

    `lr_update: per-step` evaluates the schedule at the progress itself. `per-epoch` holds one value through
    epoch e (0-based), the one the official loops set at its start: warm-up lr·(e+1)/W (LDAM-DRW's
    `adjust_learning_rate`), step milestones by the epoch index (x gamma from epoch m), and cosine after e+1
    epochs (Kang et al.'s CosineAnnealingLR stepped before each epoch, so the last epoch runs at 0).
    """
    if recipe.lr_update == "per-epoch":
        epoch = math.floor(epoch_progress + 1e-9)
        if epoch < recipe.warmup_epochs:
            return (epoch + 1) / recipe.warmup_epochs
        return _after_warmup(recipe, epoch, cosine_at=epoch + 1)
    if recipe.warmup_epochs > 0 and epoch_progress < recipe.warmup_epochs:
        return (epoch_progress + 1e-8) / recipe.warmup_epochs
    return _after_warmup(recipe, epoch_progress, cosine_at=epoch_progress)


def _after_warmup(recipe: Recipe, epoch_progress: float, cosine_at: float) -> float:
    if recipe.schedule == "step":
        return recipe.step_gamma ** sum(epoch_progress >= m for m in recipe.milestones)
    if recipe.schedule == "cosine":
        span = max(recipe.epochs - recipe.warmup_epochs, 1e-8)
        t = min(max(cosine_at - recipe.warmup_epochs, 0.0) / span, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * t))
    return 1.0


def parameter_groups(model: nn.Module, recipe: Recipe) -> list[dict]:
    """The optimiser's parameter groups: one, or with `weight_decay_on: non-bn` BatchNorm's scale and shift in
    a group of their own without weight decay."""
    if recipe.weight_decay_on == "all":
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]
    norm_ids = {
        id(p)
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._NormBase)
        for p in m.parameters(recurse=False)
    }
    decayed = [p for p in model.parameters() if p.requires_grad and id(p) not in norm_ids]
    free = [p for p in model.parameters() if p.requires_grad and id(p) in norm_ids]
    return [{"params": decayed}, {"params": free, "weight_decay": 0.0}]


def make_optimizer(params, recipe: Recipe) -> torch.optim.Optimizer:
    """SGD over `params` (an iterable of tensors, or of parameter groups: `parameter_groups`)."""
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
    """A LambdaLR stepped once per iteration; `lr_factor` decides whether it changes within an epoch."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(recipe, step / steps_per_epoch))
