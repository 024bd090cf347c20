"""GLMC (Du et al. CVPR 2023, "Global and Local Mixture Consistency Cumulative Learning for Long-tailed Visual
Recognitions"): one-stage training on an instance batch mixed with a re-sampled batch.

Each step draws an instance batch (two crop-flip views x1, x2) and a batch of the same size from a re-weighted
sampler (views x̄1, x̄2, labels ȳ), and one λ ~ Beta(α, α) for both mixes:

    global (mixup)    x_g = λ·x1 + (1-λ)·x̄1
    local (CutMix)    x_l = x2 with a box of x̄2 pasted in (sides ⌈side·√(1-λ)⌉, clipped)
    targets           ỹ = λ·onehot(y) + (1-λ)·onehot(ȳ)          (both mixes: CutMix keeps the drawn λ)
    re-weighted       ỹ_w = λ·w⊙onehot(y) + (1-λ)·w⊙onehot(ȳ),    w_j = n_j^-τ / Σ_k n_k^-τ · K
    network           features h; f(h) instance head, f_cb(h) re-balanced head, z = P(h), p = Q(z)
    L = a·[CE(f(x_g), ỹ) + CE(f(x_l), ỹ)] + (1-a)·[CE(f_cb(x_g), ỹ_w) + CE(f_cb(x_l), ỹ_w)]
        + γ·[D(p_g, sg(z_l)) + D(p_l, sg(z_g))],      a = 1 - (e / E)^2,  D = -cos,  CE(s, t) = -Σ t·log softmax(s)
    predict argmax f_cb(h)     (the official test uses the re-balanced head alone)

e counts epochs from 0 to E - 1, so a starts at 1 (instance branch only) and falls towards 0 (re-balanced branch).
The re-weighted sampler draws N images per epoch with replacement, image i with weight n_{y_i}^-q (q
`resample_weighting`; q = 0: every image equally likely).

Official code: ynu-yangpeng/GLMC @ 2c0261c (`GLMC-2023/Trainer.py`, `utils/util.py` GLMC_mixed / rand_bbox,
`model/ResNet_cifar.py` ResNet_modify, `main.py`), CIFAR commands in its README: 200 epochs, batch 64, SGD lr
0.01 momentum 0.9, wd 5e-3, cosine (the named recipe `glmc-cifar`); its "resnet32" is ResNet-32 at 4x width
(64/128/256 channels, ltbench model `resnet32-x4`); projection and prediction heads one Linear each (hidden 128);
every Linear and Conv weight Kaiming-normal. Per-cell settings (resample_weighting q, label_weighting τ,
contrast_weight γ), README "Training": CIFAR-10-LT r=100 (0, 1.2, 1), r=50 (0, 1.2, 1), r=10 (0.2, 1.0, 2);
CIFAR-100-LT r=100 (0, 1.2, 4; the defaults here), r=50 (0.2, 1.2, 6), r=10 (0.2, 1.2, 4). The README's note of
2023/5/15 gives γ = 4 for its CIFAR-10-LT r=100 result instead; its "Training" section was changed to 1 on
2023/5/24, after the switch to drawing the LT images without replacement.

Differences from the official code:
- λ is drawn once, from the epoch's generator (the official loop also draws an unused λ ~ Beta(β, β) with β =
  the `--beta 0.5` flag, then `GLMC_mixed` draws the λ it uses from Beta(1, 1): `mix_alpha` = 1 here); the box
  centre and the samplers' draws also come from the epoch's generator, so a resumed trial replays them;
- the re-weighted sampler draws a class by n_j^(1-q) and then an image of it uniformly, which is the official
  WeightedRandomSampler's distribution (image weight n^-q, N draws with replacement) drawn another way; an
  epoch of it accompanies the instance epoch batch for batch (the official loop re-starts it when used up,
  which with equal lengths is the same pairing);
- the epoch kept is the last (recipe `keep`); the official code reports its best test epoch;
- the lr follows the cosine per step (the official CosineAnnealingLR steps once after each epoch);
- CIFAR-10-LT images are normalised with ltbench's CIFAR statistics (std 0.2023, 0.1994, 0.2010, LDAM-DRW's),
  the official code with CIFAR-10's own (std 0.2470, 0.2435, 0.2616); on CIFAR-100-LT both use ltbench's;
- class weights w use max(n_j, 1), so a class with no training image (possible only on tiny data) gets a finite
  weight; the official code divides by zero there.
Both views are the engine's crop and flip on the device (`second_view`: pad 4 as on CIFAR; a dataset with another
pad, Fashion-MNIST-LT's 2, sets its own, as quick-modern does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.api import (
    CutBox,
    LTModel,
    Method,
    MethodContext,
    Sampler,
    TrainingBatch,
    beta_draw,
    cutmix_box,
    param,
    paste_box,
    register_method,
    register_sampler,
)

RESAMPLER = "glmc-resample"


def cumulative_weight(epoch: int, num_epochs: int) -> float:
    """a = 1 - (e / E)^2, the instance branch's share in epoch e (0-based): 1 at the start, falling towards 0."""
    return 1.0 - (epoch / num_epochs) ** 2


def class_weights(class_counts: torch.Tensor, power: float) -> torch.Tensor:
    """w_j = n_j^-power, normalised to sum to the class count (the official `update_weight`)."""
    weights = 1.0 / class_counts.double().clamp(min=1) ** power
    return (weights / weights.sum() * len(weights)).float()


def soft_cross_entropy(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -Σ_j t_j · log softmax(s)_j (targets need not sum to one: ỹ_w does not)."""
    return -(F.log_softmax(logits, dim=1) * soft_targets).sum(dim=1).mean()


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """SimSiam's D(p, sg(z)) = -cos(p, z), no gradient through z, averaged over the batch."""
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


@dataclass(frozen=True)
class Outputs:
    """One forward pass of a mixed batch: instance logits, re-balanced logits, projection z, prediction p."""

    logits: torch.Tensor
    balanced_logits: torch.Tensor
    z: torch.Tensor
    p: torch.Tensor

    def float(self) -> Outputs:
        """The same outputs in float32 (a no-op in fp32), so the losses never run in bf16."""
        return Outputs(self.logits.float(), self.balanced_logits.float(), self.z.float(), self.p.float())


@dataclass(frozen=True)
class GLMCMix:
    """The global (mixup) and local (CutMix) batches of one step and their targets (shared by both)."""

    global_images: torch.Tensor
    local_images: torch.Tensor
    targets: torch.Tensor  # ỹ: λ·onehot(y) + (1-λ)·onehot(ȳ)
    weighted_targets: torch.Tensor  # ỹ_w: the same with each one-hot scaled by the class weights
    lam: float
    box: CutBox


def glmc_mix(
    views: tuple[torch.Tensor, torch.Tensor],
    paired_views: tuple[torch.Tensor, torch.Tensor],
    targets: torch.Tensor,
    paired_targets: torch.Tensor,
    weights: torch.Tensor,
    alpha: float,
    generator: torch.Generator,
) -> GLMCMix:
    """The official `GLMC_mixed`: λ (then the box centre) from `generator`; mixup of the first views, the box of
    the second paired view pasted into the second view, both labelled with the same λ."""
    lam = beta_draw(alpha, generator)
    (x1, x2), (p1, p2) = views, paired_views
    height, width = x2.shape[-2:]
    box = cutmix_box(height, width, lam, generator)
    num_classes = len(weights)
    one_hot = F.one_hot(targets, num_classes).float()
    paired_one_hot = F.one_hot(paired_targets, num_classes).float()
    w = weights.to(one_hot.device)
    return GLMCMix(
        global_images=lam * x1 + (1 - lam) * p1,
        local_images=paste_box(x2, p2, box),
        targets=lam * one_hot + (1 - lam) * paired_one_hot,
        weighted_targets=lam * (w * one_hot) + (1 - lam) * (w * paired_one_hot),
        lam=lam,
        box=box,
    )


def glmc_loss(
    global_out: Outputs,
    local_out: Outputs,
    targets: torch.Tensor,
    weighted_targets: torch.Tensor,
    instance_share: float,
    contrast_weight: float,
) -> torch.Tensor:
    """a·(instance CE of both mixes) + (1-a)·(re-balanced CE of both mixes) + γ·(symmetric negative cosine)."""
    balance = soft_cross_entropy(global_out.logits, targets) + soft_cross_entropy(local_out.logits, targets)
    rebalance = soft_cross_entropy(global_out.balanced_logits, weighted_targets) + soft_cross_entropy(
        local_out.balanced_logits, weighted_targets
    )
    contrast = negative_cosine(global_out.p, local_out.z) + negative_cosine(local_out.p, global_out.z)
    return instance_share * balance + (1 - instance_share) * rebalance + contrast_weight * contrast


class GLMCModel(LTModel):
    """The dataset's backbone with GLMC's four heads on its features: `head` is the re-balanced classifier
    f_cb (it predicts, so the reports read its weights), `instance_head` the instance classifier f, `projector`
    P and `predictor` Q (one Linear each, as the official ResNet_modify)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, hidden_dim: int) -> None:
        super().__init__(backbone, feature_dim, num_classes)
        self.instance_head = nn.Linear(feature_dim, num_classes)
        self.projector = nn.Linear(feature_dim, hidden_dim)
        self.predictor = nn.Linear(hidden_dim, hidden_dim)
        for linear in (self.head, self.instance_head, self.projector, self.predictor):
            nn.init.kaiming_normal_(linear.weight)  # the official `_weights_init` (biases keep PyTorch's default)

    def train_outputs(self, x: torch.Tensor) -> Outputs:
        """One backbone pass, every head on its features (the official `forward(x, train=True)`)."""
        h = self.features(x)
        z = self.projector(h)
        return Outputs(self.instance_head(h), self.head(h), z, self.predictor(z))


class ResampleSampler(Sampler):
    """GLMC's re-weighted sampler: N draws with replacement, image i with weight n_{y_i}^-q, i.e. class j with
    probability ∝ n_j^(1-q) and then one of its images uniformly."""

    def __init__(self, labels: Any, num_classes: int, batch_size: int, q: float = 0.0) -> None:
        super().__init__(labels, num_classes, batch_size)
        self.q = q

    def epoch_indices(self, epoch: int, num_epochs: int, generator: torch.Generator) -> torch.Tensor:
        return self.draw_by_class_probability(self.power_probabilities(1.0 - self.q), len(self.labels), generator)


register_sampler(RESAMPLER)(ResampleSampler)


@register_method
class GLMC(Method):
    name = "glmc"
    description = "GLMC: mixup/CutMix with a re-sampled batch, mixture consistency, cumulative re-weighting (Du et al.)"
    views = ("crop:4+flip",)  # the second view of each image (the official TwoCropTransform); see `second_view`
    paired_sampler = RESAMPLER
    step_cost = 2.0  # two forward and backward passes (the global and the local mix) per training image

    @dataclass(frozen=True)
    class Params:
        contrast_weight: float = param(4.0, "γ, weight of the global-local mixture consistency (negative cosine)")
        label_weighting: float = param(1.2, "τ of the re-balanced branch's class weights n_j^-τ (normalised to sum K)")
        resample_weighting: float = param(0.0, "q of the paired sampler's image weights n^-q (0: uniform)")
        mix_alpha: float = param(1.0, "α of λ ~ Beta(α, α), shared by mixup and CutMix (official: 1)")
        hidden_dim: int = param(128, "width of the projection and prediction heads (official: 128 on CIFAR)")
        second_view: str = param("crop:4+flip", "augmentation policy of each image's second view (the first's)")

        def __post_init__(self) -> None:
            if self.contrast_weight < 0 or self.mix_alpha < 0 or self.hidden_dim < 1:
                raise ValueError("need contrast_weight >= 0, mix_alpha >= 0 and hidden_dim >= 1")

    def __init__(self, params: Any, context: MethodContext) -> None:
        super().__init__(params, context)
        self.weights = class_weights(context.class_counts, params.label_weighting)
        # the engine reads the views off the method: the second view is the dataset's crop and flip (pad 2 on
        # Fashion-MNIST-LT, which quick-modern sets), as the official TwoCropTransform applies one transform twice
        self.views = (params.second_view,)  # type: ignore[misc]

    def paired_sampler_options(self) -> dict[str, Any]:
        return {"q": self.params.resample_weighting}

    def build_model(self, model: LTModel) -> LTModel:
        return GLMCModel(model.backbone, model.feature_dim, model.head.out_features, self.params.hidden_dim)

    def training_step(self, batch: TrainingBatch) -> torch.Tensor:
        paired = batch.paired
        mix = glmc_mix(
            (batch.images, batch.views[0]),
            (paired.images, paired.views[0]),
            batch.targets,
            paired.targets,
            self.weights,
            self.params.mix_alpha,
            batch.generator,
        )
        model: GLMCModel = batch.model  # type: ignore[assignment]
        with batch.autocast():  # the trial's precision; the losses below in float32
            global_out, local_out = model.train_outputs(mix.global_images), model.train_outputs(mix.local_images)
        share = cumulative_weight(batch.epoch, batch.num_epochs)
        targets, weighted = mix.targets, mix.weighted_targets
        return glmc_loss(global_out.float(), local_out.float(), targets, weighted, share, self.params.contrast_weight)
