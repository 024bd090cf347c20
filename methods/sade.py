"""SADE (Zhang et al. NeurIPS 2022, "Self-Supervised Aggregation of Diverse Experts for Test-Agnostic
Long-Tailed Recognition"): three experts trained for three class distributions, then aggregated on the
unlabeled test images.

Network: RIDE's (`harness.api.multi_expert_model`): stem and first stage shared, three experts with their own
stages 2-3 at 3/4 width and cosine classifiers scaled by s = 30.

Training loss (the official `DiverseExpertLoss`), z_1, z_2, z_3 the experts' logits, π the training prior:

    L = CE(z_1, y)                                       forward expert: the long-tailed distribution
      + CE(z_2 + log π, y)                               uniform expert: balanced softmax
      + CE(z_3 + log π - λ · log π̃, y)                   backward expert: the inverse distribution, λ = 2

with log(· + 1e-9) as the official code; π̃ is the "inverse prior": the prior's values sorted and assigned in
the reverse order (the most frequent class gets the rarest class's prior).

Test-time self-supervised aggregation (the official `test_training_cifar.py`): weights a = softmax(θ), θ = 1/3
each at the start, aggregate ẑ = Σ_e a_e z_e; on the unlabeled images of the test split, two augmented views
of each image, maximise the mean cosine similarity of softmax(ẑ(view 1)) and softmax(ẑ(view 2)) over θ
only (the network frozen, BatchNorm in eval mode), SGD lr 0.1 Nesterov momentum 0.9 wd 5e-4, batch 128,
shuffled, 5 epochs, stopping after an epoch in which an expert's weight (rounded to 2 decimals) falls below
0.05. Then every split is predicted by argmax ẑ with the learned weights. This uses the test images
(transductive, without their labels): `aggregate_on: val` learns the weights on the images of ltbench's
validation split instead (held out from the training images, so no test image is used; a different class
distribution from the test set's), `aggregate_on: none` keeps the plain mean of the experts (no adaptation).
The learned weights are logged as `aggregation_weight_<e>`.

Official code: Vanint/SADE-AgnosticLT @ cba11b8 (`model/loss.py`, `model/ldam_drw_resnets/
expert_resnet_cifar.py`, `configs/config_cifar100_ir100_sade.json`: 200 epochs, batch 128, SGD lr 0.1 Nesterov
momentum 0.9, wd 5e-4, lr·(e+1)/5 for five epochs, x0.1 at 160 and at 180, per epoch: the recipe
`sade-cifar`; `configs/test_time_cifar100_ir100_sade.json`: 5 test-time epochs).

Differences from the official code:
- the training images (crop, flip, `RandomRotation(15)`: `train_view`) and the two test-time views of each
  unlabeled image (crop, colour jitter, grayscale, Gaussian blur, flip: `view_policy`) are the official
  transforms made on the device, each image's draws from the epoch's generator (training) or a generator seeded
  from the trial's seed (test time) instead of Python's and torch's global ones; the colour jitter, grayscale
  and blur are the PIL versions the official code runs (tested equal to them), the rotation torchvision's tensor
  rotation (the official code rotates PIL images; nearest neighbour both);
- the official test-time loop runs the whole model forward on every step (the network frozen by its optimiser
  holding only θ); ltbench computes the experts' logits of both views without gradient and optimises θ on
  them, which gives the same gradient for θ;
- the prior and inverse prior use ltbench's training counts (after the validation split is set aside);
- the official code reports the best test epoch of training; ltbench the last epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from harness.api import (
    LTModel,
    Method,
    MethodContext,
    MultiExpertModel,
    TrainingBatch,
    UnlabeledImages,
    check_policy,
    multi_expert_model,
    param,
    register_method,
)

AGGREGATE_ON = ("test", "val", "none")
# the official CIFAR loader's training transform: RandomCrop(32, padding=4), RandomHorizontalFlip, RandomRotation(15)
TRAIN_VIEW = "crop:4+flip+rotate:15"
# test_training_cifar.py's views: RandomCrop(32, 4), RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
# RandomGrayscale(0.2), RandomApply([GaussianBlur([0.1, 2])], p=0.2), RandomHorizontalFlip, on PIL images
TEST_TIME_VIEW = "crop:4+color-jitter-pil:0.4:0.4:0.4:0.1:0.8+grayscale-pil:0.2+blur:0.2:0.1:2+flip"


def inverse_prior(prior: torch.Tensor) -> torch.Tensor:
    """The prior's values in reverse rank order: the class with the k-th largest prior gets the k-th smallest."""
    values, order = torch.sort(prior)
    rank = torch.argsort(order)
    return values[len(prior) - 1 - rank]


def diverse_expert_loss(
    expert_logits: torch.Tensor, targets: torch.Tensor, prior: torch.Tensor, tau: float
) -> torch.Tensor:
    """SADE's training loss from the three experts' logits (B x 3 x C): softmax CE, balanced softmax, and the
    inverse-prior loss with exponent `tau`."""
    prior = prior.to(expert_logits.device, expert_logits.dtype)
    log_prior = torch.log(prior + 1e-9)
    log_inverse = torch.log(inverse_prior(prior) + 1e-9)
    loss = F.cross_entropy(expert_logits[:, 0], targets)
    loss = loss + F.cross_entropy(expert_logits[:, 1] + log_prior, targets)
    return loss + F.cross_entropy(expert_logits[:, 2] + log_prior - tau * log_inverse, targets)


def stability_loss(weights: torch.Tensor, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
    """-mean cos(softmax(Σ a_e z_e(view 1)), softmax(Σ a_e z_e(view 2))), a = softmax(weights); views B x E x C."""
    a = F.softmax(weights, dim=0)[None, :, None]
    p1 = F.softmax((a * view1).sum(1), dim=1)
    p2 = F.softmax((a * view2).sum(1), dim=1)
    return -F.cosine_similarity(p1, p2, dim=1, eps=1e-6).mean()


@register_method
class SADE(Method):
    name = "sade"
    description = "SADE: forward / uniform / inverse-prior experts, aggregated on unlabeled test images (Zhang et al.)"
    transductive: ClassVar[bool] = True
    # three experts at 3/4 width after a shared first stage: 0.11 GMACs against ResNet-32's 0.07 (SADE's README)
    step_cost: ClassVar[float] = 1.6
    views = (TRAIN_VIEW,)  # the training images as the official loader makes them; see `train_view`

    @dataclass(frozen=True)
    class Params:
        tau: float = param(2.0, "λ of the backward expert's inverse-prior term (official CIFAR configs: 2)")
        width_factor: float = param(
            0.75, "width of each expert's stages 2-3 vs the backbone's (0.75: reduce_dimension)"
        )
        scale: float = param(30.0, "scale s of the cosine classifiers' logits")
        aggregate_on: str = param("test", "split whose unlabeled images learn the aggregation: test, val or none")
        tt_epochs: int = param(5, "test-time aggregation epochs over the split's images")
        tt_lr: float = param(0.1, "test-time SGD lr of the aggregation weights (Nesterov momentum 0.9)")
        tt_weight_decay: float = param(5e-4, "test-time weight decay of the aggregation weights")
        tt_batch: int = param(128, "test-time batch size")
        tt_stop_below: float = param(0.05, "stop after an epoch in which an expert's weight falls below this")
        view_policy: str = param(TEST_TIME_VIEW, "policy of the two test-time views (harness augmentation ops)")
        train_view: str = param(TRAIN_VIEW, "policy of the training images (official: crop, flip, rotation)")

        def __post_init__(self) -> None:
            if self.aggregate_on not in AGGREGATE_ON:
                raise ValueError(f"aggregate_on must be one of {', '.join(AGGREGATE_ON)}, got {self.aggregate_on!r}")
            if self.width_factor <= 0 or self.scale <= 0 or self.tt_epochs < 0 or self.tt_lr <= 0:
                raise ValueError("need width_factor > 0, scale > 0, tt_epochs >= 0 and tt_lr > 0")
            if self.tt_batch < 1 or self.tt_weight_decay < 0:
                raise ValueError("need tt_batch >= 1 and tt_weight_decay >= 0")
            check_policy(self.view_policy)  # a bad policy fails when the suite is built, not after training
            check_policy(self.train_view)

    def __init__(self, params: Any, context: MethodContext) -> None:
        super().__init__(params, context)
        self.prior = context.priors.float()
        self.views = (params.train_view,)  # type: ignore[misc]

    def build_model(self, model: LTModel) -> LTModel | None:
        p = self.params
        return multi_expert_model(model, 3, self.context.num_classes, p.width_factor, True, p.scale)

    def training_step(self, batch: TrainingBatch) -> torch.Tensor:
        model = batch.model
        assert isinstance(model, MultiExpertModel)
        with batch.autocast():
            logits = model.expert_logits(batch.views[0])  # crop, flip and rotation (`train_view`)
        return diverse_expert_loss(logits.float(), batch.targets, self.prior, self.params.tau)

    def unlabeled_split(self) -> str | None:
        return None if self.params.aggregate_on == "none" else self.params.aggregate_on

    def adapt_unlabeled(self, model: nn.Module, images: UnlabeledImages) -> dict[str, float]:
        """Learn the experts' aggregation weights on the split's unlabeled images; the model then predicts with
        them. Returns the weights, logged with the trial's metrics."""
        assert isinstance(model, MultiExpertModel)
        p = self.params
        theta = nn.Parameter(torch.full((model.num_experts,), 1.0 / model.num_experts, device=images.device))
        optimizer = torch.optim.SGD([theta], lr=p.tt_lr, momentum=0.9, weight_decay=p.tt_weight_decay, nesterov=True)
        epochs_run = 0
        for epoch in range(p.tt_epochs):
            for view1, view2 in images.view_pairs(p.tt_batch, p.view_policy, epoch):
                with torch.no_grad():
                    z1, z2 = model.expert_logits(view1).float(), model.expert_logits(view2).float()
                loss = stability_loss(theta, z1, z2)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            epochs_run = epoch + 1
            rounded = torch.round(F.softmax(theta.detach(), dim=0) * 100) / 100
            if bool((rounded < p.tt_stop_below).any()):
                break
        weights = F.softmax(theta.detach(), dim=0)
        model.head.aggregation.copy_(weights)  # every split is now predicted by Σ a_e z_e
        extras = {f"aggregation_weight_{e + 1}": float(w) for e, w in enumerate(weights.cpu())}
        return {**extras, "aggregation_epochs": float(epochs_run)}
