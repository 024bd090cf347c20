"""PaCo (Cui et al. ICCV 2021, "Parametric Contrastive Learning"): supervised contrastive learning over a
MoCo queue, with the classifier's weights as learnable class centres and a logit-adjusted supervised term.

Each training image gives two views: a query view x_q (crop, flip, the CIFAR AutoAugment policy, Cutout) and a
key view x_k (SimCLR-style: resized crop, flip, colour jitter, grayscale, blur). The query encoder is the model's
backbone f with a projection MLP g (Linear, BatchNorm, ReLU, Linear to `dim`); the key encoder is a momentum copy
of f and g (θ_k ← m·θ_k + (1-m)·θ_q before each step, no gradient). A queue holds the last K keys and labels.

    q_i = ĝ(f(x_q,i)),  k_i = ĝ_k(f_k(x_k,i))          (ĝ: unit-normalised projection)
    z_i = W f(x_q,i) + b + log π                     the classifier's logits, logit-adjusted by the prior π
    row i of the scores: [ z_i  |  q_i·v / τ for v in (q_1..q_B, k_1..k_B, queue) ]
    L_i = -[ β·log p(y_i) + α·Σ_{v ≠ q_i, y_v = y_i} log p(v) ] / (β + α·|{v ≠ q_i : y_v = y_i}|)
    p(·) = exp(score) / (Σ_classes exp(z) + γ·Σ_{v ≠ q_i} exp(q_i·v / τ))
    predict argmax_j (W f(x) + b)_j                (the classifier's raw logits)

The class centres are the "parametric" part: the classifier's logit of class y is one more positive (weight β)
for every anchor of class y, so the rare classes keep a centre however few of their samples the queue holds.

As the official code (dvlab-research/Parametric-Contrastive-Learning @ fe56535, PaCo/LT: `paco_cifar.py`,
`losses.py` PaCoLoss, `moco/builder.py` MoCo, `sh/CIFAR100_train_imb0.01.sh`): ResNet-32 (64-d features),
projection to 32-d through a 64-d MLP, K = 1024, m = 0.999, τ = 0.05, α = 0.01, β = γ = 1, batch 128 (last
partial batch dropped), SGD lr 0.05, momentum 0.9, wd 5e-4, 400 epochs, the lr set per epoch: lr·(e+1)/10 for
the first epochs, ×0.1 after epoch 320 and ×0.01 after 360 (the recipe `paco-cifar`). The queue starts as the
official one: Gaussian keys normalised along the queue axis (dim 0, as `moco/builder.py` writes it) and
uniform random labels. The classifier takes PyTorch's default Linear init (the official `MoCo.linear`), the
projection's last layer Kaiming-normal (it is the ResNet's `fc`, under `_weights_init`).

Differences from the official code:
- ltbench keeps the last epoch; the official code logs the best test epoch;
- the warm-up runs epochs 0-9 at lr·(e+1)/10 and epoch 10 at lr; the official `adjust_learning_rate` also
  scales epoch 10 (`epoch <= warmup_epochs`), to 1.1·lr;
- the prior π is ltbench's training counts (after its validation split is set aside);
- the views are made on the device by ltbench's augmentation ops (`views` below), each image's draws from the
  epoch's generator, instead of PIL transforms with Python's and numpy's global generators (the same
  distributions, other images than an official run with the same seed). The query view's `cifar10-policy` is
  the official PIL CIFAR10Policy, and the key view's `-pil` ops and `blur` are torchvision's transforms on PIL
  images and PIL's GaussianBlur, each transcribed and tested equal pixel for pixel (harness/data/augment_*.py,
  tests/data/test_augment_official.py); the normalisation is the
  dataset's (the official code: mean (0.4914, 0.4822, 0.4465), std (0.2023, 0.1994, 0.2010));
- the queue's initial keys and labels are drawn from the first epoch's generator (the official code: torch's
  global generator when the model is built);
- the key encoder's batch is not shuffled across GPUs (MoCo's shuffle-BN): ltbench trains on one device, where
  the official single-GPU scripts' shuffle is a permutation of one batch and leaves BatchNorm's statistics as
  they are;
- the official MoCo also keeps a momentum copy of the classifier (`linear_k`) that nothing reads; it is left out;
- a queue whose size is not a multiple of the batch size wraps around (the official code asserts it is one).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.api import LtbenchError, LTModel, Method, TrainingBatch, param, register_method

# the official query view (`augmentation_regular`) and key view (`augmentation_sim_cifar`), in their order
QUERY_VIEW = "crop:4+flip+cifar10-policy+cutout:16"
KEY_VIEW = "resized-crop-pil:0.2:1+flip+color-jitter-pil:0.4:0.4:0.4:0.1:0.8+grayscale-pil:0.2+blur:0.5:0.1:2"


def paco_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    sup_logits: torch.Tensor,
    log_prior: torch.Tensor,
    *,
    alpha: float,
    beta: float,
    gamma: float,
    temperature: float,
) -> torch.Tensor:
    """PaCo's loss. `features`: unit vectors (queries, then keys, then the queue), the first B (B =
    `sup_logits`' rows) the anchors; `labels` one per feature; `sup_logits` the anchors' classifier logits."""
    batch, num_classes = sup_logits.shape
    anchors = features[:batch]
    contrast = anchors @ features.T / temperature
    scores = torch.cat((sup_logits + log_prior, contrast), dim=1)
    scores = scores - scores.max(dim=1, keepdim=True).values.detach()  # stability; log p is unchanged by it
    not_self = torch.ones_like(contrast)
    not_self[torch.arange(batch), torch.arange(batch)] = 0
    same_class = (labels[:batch, None] == labels[None, :]).float() * not_self
    one_hot = F.one_hot(labels[:batch], num_classes).float()
    positives = torch.cat((beta * one_hot, alpha * same_class), dim=1)
    in_denominator = torch.cat((torch.ones_like(one_hot), gamma * not_self), dim=1)
    log_p = scores - torch.log((scores.exp() * in_denominator).sum(dim=1, keepdim=True) + 1e-12)
    return -((positives * log_p).sum(dim=1) / positives.sum(dim=1)).mean()


def projection_mlp(feature_dim: int, dim: int) -> nn.Sequential:
    """The official MoCo-v2 head on the ResNet's features: Linear, BatchNorm, ReLU, Linear to `dim`."""
    last = nn.Linear(feature_dim, dim)
    nn.init.kaiming_normal_(last.weight)  # the ResNet's own `fc`, initialised by its `_weights_init`
    return nn.Sequential(nn.Linear(feature_dim, feature_dim), nn.BatchNorm1d(feature_dim), nn.ReLU(), last)


class PaCoModel(LTModel):
    """The dataset's backbone and a fresh linear classifier (the class centres), with the projection beside it."""

    def __init__(self, model: LTModel, dim: int) -> None:
        super().__init__(model.backbone, model.feature_dim, model.head.out_features)
        self.projection = projection_mlp(model.feature_dim, dim)


class KeyEncoder(nn.Module):
    """The momentum copy of the backbone and the projection: unit-normalised keys, never a gradient."""

    def __init__(self, model: PaCoModel) -> None:
        super().__init__()
        self.backbone = copy.deepcopy(model.backbone)
        self.projection = copy.deepcopy(model.projection)
        for p in self.parameters():
            p.requires_grad_(False)
            p.grad = None

    @torch.no_grad()
    def momentum_update(self, model: PaCoModel, m: float) -> None:
        """θ_k ← m·θ_k + (1-m)·θ_q, parameters only (BatchNorm's running statistics stay the key encoder's)."""
        keys = [*self.backbone.parameters(), *self.projection.parameters()]
        queries = [*model.backbone.parameters(), *model.projection.parameters()]
        torch._foreach_mul_(keys, m)
        torch._foreach_add_(keys, queries, alpha=1 - m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.backbone(x))


@register_method
class PaCo(Method):
    name = "paco"
    description = "PaCo: supervised contrast over a MoCo queue with the classifier as class centres (Cui et al.)"
    views = (QUERY_VIEW, KEY_VIEW)
    full_batches = True  # the official loader drops the last partial batch; BatchNorm in the projection
    # the query's forward and backward (1), the key encoder's forward without backward (~1/3: a backward costs
    # about two forwards), the views' AutoAugment and colour ops (a rough ~0.17)
    step_cost = 1.5

    @dataclass(frozen=True)
    class Params:
        alpha: float = param(0.01, "α, the weight of each same-class sample among the positives")
        beta: float = param(1.0, "β, the weight of the class centre (the classifier's logit) among the positives")
        gamma: float = param(1.0, "γ, the weight of the samples in the softmax's denominator")
        temperature: float = param(0.05, "τ of the sample-to-sample similarities (the official moco-t)")
        queue_size: int = param(1024, "K, keys kept in the queue (at least the batch size)")
        momentum: float = param(0.999, "m of the key encoder's momentum update")
        dim: int = param(32, "the projection's output dimension (the official moco-dim)")

        def __post_init__(self) -> None:
            if min(self.alpha, self.beta, self.gamma) < 0 or self.alpha + self.beta <= 0:
                raise ValueError("alpha, beta and gamma must be >= 0, and alpha + beta > 0")
            if self.temperature <= 0 or not 0 <= self.momentum < 1:
                raise ValueError("need temperature > 0 and momentum in [0, 1)")
            if self.queue_size < 1 or self.dim < 1:
                raise ValueError("queue_size and dim must be positive integers")

    def __init__(self, params: Any, context: Any) -> None:
        super().__init__(params, context)
        self.log_prior = torch.log(context.priors.float() + 1e-9)  # the official `log(weight + 1e-9)`
        self.key_encoder: KeyEncoder | None = None
        self.queue: torch.Tensor | None = None  # (K, dim) unit keys (rows), after the first K steps' keys
        self.queue_labels: torch.Tensor | None = None
        self.queue_ptr = 0
        self._pending: dict[str, Any] = {}  # state restored before the first step builds the key encoder

    def build_model(self, model: LTModel) -> LTModel:
        return PaCoModel(model, self.params.dim)

    # -- the step ----------------------------------------------------------------------------------------
    def training_step(self, batch: TrainingBatch) -> torch.Tensor:
        if len(batch.views) != 2:
            raise LtbenchError(f"paco needs its two views (query, key), got {len(batch.views)}")
        query_images, key_images = batch.views
        model: PaCoModel = batch.model  # type: ignore[assignment]
        self._start(model, batch.generator, len(batch.targets))
        assert self.key_encoder is not None and self.queue is not None and self.queue_labels is not None
        with batch.autocast():
            feats = model.features(query_images)
            logits = model.head(feats).float()
            queries = model.projection(feats).float()
        queries = F.normalize(queries, dim=1)
        with torch.no_grad():
            self.key_encoder.train(model.training)
            self.key_encoder.momentum_update(model, self.params.momentum)
            with batch.autocast():
                keys = F.normalize(self.key_encoder(key_images).float(), dim=1)
        features = torch.cat((queries, keys, self.queue))
        labels = torch.cat((batch.targets, batch.targets, self.queue_labels))
        p = self.params
        loss = paco_loss(
            features,
            labels,
            logits,
            self.log_prior,
            alpha=p.alpha,
            beta=p.beta,
            gamma=p.gamma,
            temperature=p.temperature,
        )
        self.enqueue(keys, batch.targets)
        return loss

    def _start(self, model: PaCoModel, generator: torch.Generator, batch_size: int) -> None:
        """The key encoder (a copy of the model) and the queue, on the first step, or restored from a checkpoint."""
        if batch_size > self.params.queue_size:
            raise LtbenchError(
                f"paco: queue_size ({self.params.queue_size}) must be at least the batch size ({batch_size})"
            )
        if self.key_encoder is not None:
            return
        device = next(model.parameters()).device
        self.log_prior = self.log_prior.to(device)
        self.key_encoder = KeyEncoder(model)
        if self._pending:
            self.key_encoder.load_state_dict(self._pending["key_encoder"])
            self.queue = self._pending["queue"].to(device)
            self.queue_labels = self._pending["queue_labels"].to(device)
            self.queue_ptr = int(self._pending["queue_ptr"])
            self._pending = {}
            return
        k, classes = self.params.queue_size, self.context.num_classes
        self.queue = F.normalize(torch.randn(k, self.params.dim, generator=generator), dim=0).to(device)
        self.queue_labels = torch.randint(0, classes, (k,), generator=generator).to(device)
        self.queue_ptr = 0

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, labels: torch.Tensor) -> None:
        """Replace the oldest keys and labels with this batch's, moving the pointer (wrapping at K)."""
        assert self.queue is not None and self.queue_labels is not None
        k = len(self.queue)
        slots = (self.queue_ptr + torch.arange(len(keys), device=self.queue.device)) % k
        self.queue[slots] = keys.detach().to(self.queue.dtype)
        self.queue_labels[slots] = labels
        self.queue_ptr = (self.queue_ptr + len(keys)) % k

    # -- state across steps --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self.key_encoder is None or self.queue is None or self.queue_labels is None:
            return dict(self._pending)
        return {
            "key_encoder": {name: t.detach().cpu().clone() for name, t in self.key_encoder.state_dict().items()},
            "queue": self.queue.cpu().clone(),
            "queue_labels": self.queue_labels.cpu().clone(),
            "queue_ptr": self.queue_ptr,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.key_encoder, self.queue, self.queue_labels, self.queue_ptr = None, None, None, 0
        self._pending = dict(state)
