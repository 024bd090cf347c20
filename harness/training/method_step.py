"""The training step of a method that owns it (`Method.training_step`), in the engine's step signature.

A method that keeps the default step trains with `loop.training_step` itself, so its results stay exactly as
before and the engine remains free to capture that step. A method that overrides `training_step` computes its
batch's loss from a `TrainingBatch` (the model, the batch, the epoch's generator for its random draws, the
precision); the update (backward, optimiser, `after_step`, lr schedule) is the engine's `apply_update`.
"""

from __future__ import annotations

import torch

from harness.data.pipeline import ViewedImages
from harness.plugins.method import Method, PairedBatch, TrainingBatch
from harness.training.loop import Learner, StepFn, apply_update, training_step


def owns_step(method: Method) -> bool:
    return type(method).training_step is not Method.training_step


def method_step(method: Method, epoch: int, num_epochs: int, generator: torch.Generator) -> StepFn:
    """The step function of one epoch of `method`: the engine's own unless the method owns its step."""
    if not owns_step(method):
        return training_step

    def step(learner: Learner, images: torch.Tensor | ViewedImages, targets: torch.Tensor) -> torch.Tensor:
        views: tuple[torch.Tensor, ...] = ()
        paired = None
        if isinstance(images, ViewedImages):  # the method asked for views or a paired stream
            views = images.views
            paired = PairedBatch(*images.paired) if images.paired is not None else None
            images = images.images
        autocast = learner.precision.autocast
        batch = TrainingBatch(learner.model, images, targets, generator, epoch, num_epochs, autocast, views, paired)
        return apply_update(learner, method.training_step(batch))

    return step
