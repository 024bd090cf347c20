"""RIDE (Wang et al. ICLR 2021, "Long-tailed Recognition by Routing Diverse Distribution-Aware Experts"):
several experts sharing early layers, each trained with an LDAM-DRW loss and pushed away from the ensemble.

Network (`harness.api.multi_expert_model`): the dataset ResNet's stem and first stage shared, each of the E
experts its own second and third stages at 3/4 width (the official `reduce_dimension`: 24 and 48 channels on
ResNet-32) and a cosine classifier scaled by s = 30; the prediction is the mean of the experts' logits z̄.

Loss of a batch (the official `RIDELoss`), z_e the logits of expert e (already s·cos):

    L = Σ_e [ CE_w(z_e - s·Δ_y·onehot(y), y)  +  λ · T̄² · KL(softmax(z̄ / T) ‖ softmax(z_e / T)) ]

- Δ_j = m · n_j^(-1/4) / max_k n_k^(-1/4), m = 0.5 (LDAM's margins, in units of the scaled logits);
- w: none before the DRW epoch (160 of 200), then Cui et al.'s effective-number weights (β = 0.9999);
- the diversity term: λ = -0.45 (CIFAR-100-LT config `additional_diversity_factor`; negative, so each expert is
  pushed away from the ensemble), softmax(z̄ / T) detached; T = T0 = 1 before the DRW epoch, then per class
  T_j = T0 · w'_j with w'_j ∝ C·π_j·r + 1 - r, r = 0.05, normalised to max 1; T̄ the mean of T_j;
  KL is `F.kl_div(..., reduction="batchmean")`.

Official code: frank-xwang/RIDE-LongTailRecognition @ ab8be5c (`model/loss.py` RIDELoss,
`model/ldam_drw_resnets/ride_resnet_cifar.py`, `configs/config_imbalance_cifar100_ride.json`: 3 experts,
reduce_dimension, use_norm; 200 epochs, batch 128, SGD lr 0.1 Nesterov momentum 0.9, wd 5e-4, lr·(e+1)/5 for
the first five epochs, x0.01 at 160 and again at 180, per epoch: the recipe `ride-cifar`).

The expert-assignment router ("EA", the second stage that decides per image how many experts to run) is the
decoupled method `ride-ea` on this method's frozen experts (`methods/ride_ea.py`); the model zoo's published
CIFAR-100-LT row is with it. Not implemented: the distillation variant ("RIDE + Distill").

Differences from the official code:
- the training images are the official loader's transform (crop, flip, `RandomRotation(15)`: `train_view`)
  made on the device from the epoch's generator (the same distributions, other draws than Python's and torch's
  global generators; the rotation equal to torchvision's tensor rotation, the official code rotates PIL
  images, nearest neighbour both); the engine's own crop-and-flip view of the batch goes unused;
- the cosine classifier starts from uniform(-1, 1) rows, as the official one (its renormalisation changes no
  direction); margins and weights use ltbench's training counts (after the validation split is set aside);
- the DRW epoch is scaled to the recipe's length as `ce-drw` does (exactly 160 on the 200-epoch recipe);
- the official code reports the best test epoch (`monitor: max val_accuracy` on the test loader); ltbench the
  last epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from harness.api import (
    LTModel,
    MethodContext,
    MultiExpertModel,
    TrainingBatch,
    check_policy,
    multi_expert_model,
    param,
    register_method,
)
from methods.ce_drw import DeferredReweighting, DRWParams
from methods.ldam_drw import ldam_margins

# the official CIFAR loader's training transform: RandomCrop(32, padding=4), RandomHorizontalFlip, RandomRotation(15)
TRAIN_VIEW = "crop:4+flip+rotate:15"


def diversity_temperature_weights(class_counts: torch.Tensor, reweight_factor: float) -> torch.Tensor:
    """RIDE's per-class factors of the diversity temperature: C·π_j·r + 1 - r, divided by their maximum."""
    prior = class_counts.double() / class_counts.double().sum()
    raw = len(prior) * prior * reweight_factor + 1 - reweight_factor
    if not bool((raw > 0).all()):
        raise ValueError(f"reweight_factor {reweight_factor} is too large: a class's temperature is not positive")
    return (raw / raw.max()).float()


def ride_loss(
    expert_logits: torch.Tensor,
    targets: torch.Tensor,
    margins: torch.Tensor,
    scale: float,
    diversity_factor: float,
    temperature: torch.Tensor | float,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """RIDE's loss of a batch from every expert's logits (B x E x C, already times `scale`): each expert's LDAM
    cross-entropy (margins `margins` times `scale`, weighted by `class_weights`) plus `diversity_factor` ·
    T̄² · KL(softmax(mean / T) ‖ softmax(expert / T)), the ensemble's distribution held fixed."""
    mean = expert_logits.mean(dim=1)
    onehot = F.one_hot(targets, expert_logits.shape[2]).to(expert_logits.dtype)
    shift = scale * margins.to(expert_logits.device, expert_logits.dtype)[targets][:, None] * onehot
    if isinstance(temperature, torch.Tensor):
        temperature = temperature.to(expert_logits.device, expert_logits.dtype)[None, :]
        t_mean = float(temperature.mean())
    else:
        t_mean = float(temperature)
    with torch.no_grad():
        ensemble = F.softmax(mean / temperature, dim=1)
    total = expert_logits.new_zeros(())
    for e in range(expert_logits.shape[1]):
        z = expert_logits[:, e] if diversity_factor != 0 else mean  # the official: the mean when λ = 0
        total = total + F.cross_entropy(z - shift, targets, weight=class_weights)
        log_p = F.log_softmax(expert_logits[:, e] / temperature, dim=1)
        total = total + diversity_factor * t_mean * t_mean * F.kl_div(log_p, ensemble, reduction="batchmean")
    return total


@dataclass(frozen=True)
class RIDEParams(DRWParams):
    num_experts: int = param(3, "experts sharing the first stage (the published CIFAR row's 3)")
    width_factor: float = param(0.75, "width of each expert's stages 2-3 vs the backbone's (0.75: reduce_dimension)")
    max_margin: float = param(0.5, "the largest LDAM margin Δ_j (that of the smallest class)")
    scale: float = param(30.0, "scale s of the cosine classifiers' logits")
    diversity_factor: float = param(-0.45, "λ of the diversity KL term (negative: away from the ensemble)")
    diversity_temperature: float = param(1.0, "base temperature T0 of the diversity term")
    reweight_factor: float = param(0.05, "r of the per-class diversity temperatures after the DRW epoch")
    train_view: str = param(TRAIN_VIEW, "policy of the training images (official: crop, flip, rotation)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_experts < 1 or self.width_factor <= 0 or self.scale <= 0 or self.max_margin < 0:
            raise ValueError("need num_experts >= 1, width_factor > 0, scale > 0 and max_margin >= 0")
        if self.diversity_temperature <= 0 or not 0 <= self.reweight_factor < 1:
            raise ValueError("need diversity_temperature > 0 and reweight_factor in [0, 1)")
        check_policy(self.train_view)  # a bad policy fails when the suite is built, not in the trial


@register_method
class RIDE(DeferredReweighting):
    name = "ride"
    description = "RIDE: experts sharing early layers, LDAM-DRW per expert plus a diversity KL (Wang et al. 2021)"
    Params = RIDEParams
    # three experts at 3/4 width after a shared first stage: 0.11 GMACs against ResNet-32's 0.07 (SADE's README)
    step_cost: ClassVar[float] = 1.6
    views = (TRAIN_VIEW,)  # the training images as the official loader makes them; see `train_view`

    def __init__(self, params: Any, context: MethodContext) -> None:
        super().__init__(params, context)
        self.margins = ldam_margins(context.class_counts, params.max_margin)
        self.views = (params.train_view,)  # type: ignore[misc]
        self.temperature_weights = diversity_temperature_weights(context.class_counts, params.reweight_factor)

    def build_model(self, model: LTModel) -> LTModel | None:
        p = self.params
        return multi_expert_model(model, p.num_experts, self.context.num_classes, p.width_factor, True, p.scale)

    def build_head(self, feature_dim: int, num_classes: int) -> nn.Module | None:
        return None  # each expert has its own cosine classifier (build_model)

    def temperature(self) -> torch.Tensor | float:
        """T0 before the DRW epoch, T0 · w'_j from it on (the official switches both at its reweight epoch)."""
        base = self.params.diversity_temperature
        return base if self.class_weights is None else base * self.temperature_weights

    def training_step(self, batch: TrainingBatch) -> torch.Tensor:
        model = batch.model
        assert isinstance(model, MultiExpertModel)
        with batch.autocast():
            logits = model.expert_logits(batch.views[0])  # crop, flip and rotation (`train_view`)
        p = self.params
        weights = self.class_weights
        return ride_loss(
            logits.float(),
            batch.targets,
            self.margins,
            p.scale,
            p.diversity_factor,
            self.temperature(),
            None if weights is None else weights.to(logits.device),
        )
