"""Channel Whitening + B3RS + BET (Zhiwei Zhang, "You Only Need End-to-End Training for Long-Tailed
Recognition", arXiv 2112.05958, withdrawn; successor arXiv 2408.17197, where B3RS is called GRBS).

**Reconstruction**: the full text is not publicly retrievable. What is known, and implemented here:

- Channel Whitening: ZCA whitening of the pooled features over the mini-batch, directly before the linear
  classifier (batch whitening as in Huang et al. 2018, "Decorrelated Batch Normalization"):

      μ = mean(z),  Σ = (z - μ)ᵀ(z - μ) / B + εI = U diag(λ) Uᵀ,  W_zca = U diag(λ^-1/2) Uᵀ,  ẑ = (z - μ) W_zca

  Training uses the batch's μ and W_zca, evaluation their running averages (DBN defaults ε = 1e-3,
  momentum 0.1). Channels are whitened in groups of at most `group_size` (needed when the feature
  dimension approaches the batch size, e.g. 2048-d ResNeXt features). Trained end to end with a logits-margin
  loss: the logit-adjusted loss (τ = 1) by default.
- B3RS and BET: the samplers `b3rs` and `bet` defined and registered below (`register_sampler`), themselves
  reconstructions (their docstrings give the rules). BET's whitening statistics and loss use the whole
  mixed batch.

The three ablation rows are registered separately: `cw` (+LA loss), `cw-b3rs`, `cw-b3rs-bet`.

Every epoch has full batches only (`full_batches`: an instance-sampled epoch drops its last partial batch,
as `drop_last` would). A partial batch of a few images would otherwise whiten with a rank-deficient
covariance and fold it into the running matrix that evaluation uses, and the `cw` vs `cw-b3rs` ablation
(whose samplers always give full batches) would differ by that artefact as well as by the sampler.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.api import (
    LtbenchError,
    Method,
    MethodContext,
    Sampler,
    log_prior,
    logit_adjusted_loss,
    param,
    register_method,
    register_sampler,
)


class InverseSquareRoot(torch.autograd.Function):
    """Σ^(-1/2) of a symmetric positive-definite matrix, with a backward that stays finite for repeated
    eigenvalues.

    `torch.linalg.eigh`'s own backward divides by λ_i - λ_j, which is infinite whenever eigenvalues repeat, as
    they do whenever the batch is smaller than the group (all the null-space eigenvalues equal ε). For a
    matrix function f(Σ) = U f(Λ) Uᵀ the derivative is U (F ∘ (Uᵀ G U)) Uᵀ with F_ij the divided difference
    (f(λ_i) - f(λ_j)) / (λ_i - λ_j) (Daleckii-Krein); for f(λ) = λ^(-1/2) it is -1 / (s_i s_j (s_i + s_j)),
    s = √λ, which is exact and finite everywhere (and equals f'(λ_i) on the diagonal).
    """

    @staticmethod
    def forward(ctx, sigma: torch.Tensor) -> torch.Tensor:
        eigenvalues, eigenvectors = torch.linalg.eigh(sigma)
        roots = eigenvalues.clamp(min=torch.finfo(sigma.dtype).tiny).sqrt()
        ctx.save_for_backward(roots, eigenvectors)
        return eigenvectors @ torch.diag(1.0 / roots) @ eigenvectors.T

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        roots, u = ctx.saved_tensors
        divided = -1.0 / (roots[:, None] * roots[None, :] * (roots[:, None] + roots[None, :]))
        symmetric = (grad + grad.T) / 2
        return u @ (divided * (u.T @ symmetric @ u)) @ u.T


class ChannelWhitening(nn.Module):
    """Grouped ZCA whitening over the batch, with running statistics for evaluation."""

    def __init__(self, dim: int, group_size: int = 64, eps: float = 1e-3, momentum: float = 0.1) -> None:
        super().__init__()
        self.groups = math.ceil(dim / group_size)
        self.dim, self.eps, self.momentum = dim, eps, momentum
        self.register_buffer("running_mean", torch.zeros(dim))
        sizes = [len(c) for c in torch.arange(dim).tensor_split(self.groups)]
        self.register_buffer("running_whiten", torch.block_diag(*[torch.eye(n) for n in sizes]))
        self.sizes = sizes

    def batch_whitening(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, block-diagonal W_zca) of the batch; the eigendecomposition runs in float64 for stability."""
        mean = z.mean(0)
        centred = (z - mean).double()
        blocks = []
        for chunk in centred.split(self.sizes, dim=1):
            cov = chunk.T @ chunk / len(chunk) + self.eps * torch.eye(
                chunk.shape[1], dtype=chunk.dtype, device=z.device
            )
            blocks.append(InverseSquareRoot.apply(cov))
        return mean, torch.block_diag(*blocks).to(z.dtype)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # Whitening runs in float32 even under bf16 autocast: a covariance and its inverse square root in
        # bf16 would be meaningless, and the running statistics are float32 buffers.
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.float()
            if self.training and len(z) > 1:
                mean, whiten = self.batch_whitening(z)
                with torch.no_grad():
                    self.running_mean.lerp_(mean.detach(), self.momentum)
                    self.running_whiten.lerp_(whiten.detach(), self.momentum)
                return (z - mean) @ whiten
            return (z - self.running_mean) @ self.running_whiten


class WhitenedLinear(nn.Module):
    """Channel Whitening, then the linear classifier."""

    def __init__(self, dim: int, num_classes: int, group_size: int, eps: float, momentum: float) -> None:
        super().__init__()
        self.whitening = ChannelWhitening(dim, group_size, eps, momentum)
        self.linear = nn.Linear(dim, num_classes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(self.whitening(z))


@register_sampler("b3rs")
class B3RSSampler(Sampler):
    """Reconstruction of B3RS (Zhang, arXiv 2112.05958): group-based relatively balanced batches.

    The paper's exact rule (its Eqs. 4-5) is unknown. Reconstruction, every choice a hyperparameter: sort
    classes by size, split them into `groups` contiguous groups of (nearly) equal class count; each batch gives
    group g a share of slots ∝ N_g^q (N_g its images, 0 < q < 1: between instance- and class-balanced), with
    at least one slot for every group; each slot is an image drawn uniformly inside its group.
    """

    def __init__(self, labels: np.ndarray, num_classes: int, batch_size: int, groups: int = 3, q: float = 0.5) -> None:
        super().__init__(labels, num_classes, batch_size)
        if groups < 1 or not 0 <= q <= 1:
            raise LtbenchError(f"b3rs needs groups >= 1 and 0 <= q <= 1, got groups={groups}, q={q}")
        order = torch.argsort(self.class_counts, descending=True, stable=True)
        order = order[self.present[order]]
        self.groups = [g for g in torch.tensor_split(order, min(groups, len(order))) if len(g)]
        self.group_members = [torch.nonzero(torch.isin(self.labels, g)).flatten() for g in self.groups]
        sizes = torch.tensor([len(m) for m in self.group_members], dtype=torch.float64)
        self.group_share = sizes**q / (sizes**q).sum()

    def slots_per_batch(self, batch_size: int) -> list[int]:
        """Largest-remainder apportionment of `batch_size` slots to groups, each group at least one."""
        g = len(self.groups)
        if batch_size < g:
            raise LtbenchError(f"b3rs needs a batch of at least {g} images (one per group), got {batch_size}")
        raw = self.group_share * (batch_size - g)
        slots = torch.floor(raw).long() + 1
        remainder = batch_size - int(slots.sum())
        for i in torch.argsort(raw - torch.floor(raw), descending=True, stable=True)[:remainder].tolist():
            slots[i] += 1
        return slots.tolist()

    def draw_batch(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        parts = []
        for members, k in zip(self.group_members, self.slots_per_batch(batch_size), strict=True):
            parts.append(members[torch.randint(len(members), (k,), generator=generator)])
        batch = torch.cat(parts)
        return batch[torch.randperm(len(batch), generator=generator)]

    def epoch_indices(self, epoch: int, num_epochs: int, generator: torch.Generator) -> torch.Tensor:
        n_batches = -(-len(self.labels) // self.batch_size)
        return torch.cat([self.draw_batch(self.batch_size, generator) for _ in range(n_batches)])


@register_sampler("bet")
class BETSampler(B3RSSampler):
    """Reconstruction of BET (batch embedded training; Zhang, arXiv 2112.05958).

    The public reviews describe BET only as "a simple technique to control the frequency of [B3RS]"; its
    mechanism is unknown. Reconstruction: every batch is an instance-sampled batch in which a fraction
    `embed_fraction` of the slots is replaced by a B3RS-drawn sub-batch; whitening statistics and the loss are
    computed on the whole mixed batch. The instance part walks a fresh permutation, so an epoch still shows
    about (1 - embed_fraction) of the images once each.
    """

    def __init__(
        self,
        labels: np.ndarray,
        num_classes: int,
        batch_size: int,
        groups: int = 3,
        q: float = 0.5,
        embed_fraction: float = 0.5,
    ) -> None:
        super().__init__(labels, num_classes, batch_size, groups, q)
        if not 0 < embed_fraction < 1:
            raise LtbenchError(f"bet needs 0 < embed_fraction < 1, got {embed_fraction}")
        self.embedded = max(len(self.groups), round(embed_fraction * batch_size))
        self.embedded = min(self.embedded, batch_size - 1)

    def epoch_indices(self, epoch: int, num_epochs: int, generator: torch.Generator) -> torch.Tensor:
        n_batches = -(-len(self.labels) // self.batch_size)
        instance = torch.randperm(len(self.labels), generator=generator)
        plain = self.batch_size - self.embedded
        batches = []
        for b in range(n_batches):
            start = (b * plain) % len(instance)
            head = instance[start : start + plain]
            if len(head) < plain:
                head = torch.cat([head, instance[: plain - len(head)]])
            batches.append(torch.cat([head, self.draw_batch(self.embedded, generator)]))
        return torch.cat(batches)


@dataclass(frozen=True)
class WhiteningParams:
    tau: float = param(1.0, "logit adjustment τ of the loss; 0 gives plain cross-entropy")
    group_size: int = param(64, "channels whitened together (ZCA within each group)")
    eps: float = param(1e-3, "added to the covariance's eigenvalues before Σ^(-1/2)")
    momentum: float = param(0.1, "momentum of the running statistics used at evaluation")

    def __post_init__(self) -> None:
        if self.group_size < 1 or self.eps <= 0 or not 0 < self.momentum <= 1 or self.tau < 0:
            raise ValueError("need group_size >= 1, eps > 0, 0 < momentum <= 1 and tau >= 0")


@dataclass(frozen=True)
class B3RSParams(WhiteningParams):
    groups: int = param(3, "class groups of B3RS, by class size (reconstruction)")
    q: float = param(0.5, "a group's share of each batch ∝ N_g^q")


@dataclass(frozen=True)
class BETParams(B3RSParams):
    embed_fraction: float = param(0.5, "share of each batch drawn by B3RS (reconstruction)")


@register_method
class ChannelWhiteningLA(Method):
    name = "cw"
    description = "Channel Whitening (batch ZCA before the classifier) + LA loss, end to end (Zhang; reconstruction)"
    Params = WhiteningParams
    sampler = "instance"
    full_batches = True  # the whitening learns running statistics from every training batch

    def __init__(self, params: Any, context: MethodContext) -> None:
        super().__init__(params, context)
        self.offset = log_prior(context.priors, params.tau)

    def build_head(self, feature_dim: int, num_classes: int) -> nn.Module:
        p = self.params
        return WhitenedLinear(feature_dim, num_classes, p.group_size, p.eps, p.momentum)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.params.tau == 0:
            return F.cross_entropy(logits, targets)
        return logit_adjusted_loss(logits, targets, self.offset)


@register_method
class ChannelWhiteningB3RS(ChannelWhiteningLA):
    name = "cw-b3rs"
    description = "Channel Whitening + LA loss with the B3RS group-balanced batch sampler (Zhang; reconstruction)"
    Params = B3RSParams
    sampler = "b3rs"

    def sampler_options(self) -> dict[str, Any]:
        return {"groups": self.params.groups, "q": self.params.q}


@register_method
class ChannelWhiteningB3RSBET(ChannelWhiteningB3RS):
    name = "cw-b3rs-bet"
    description = "Channel Whitening + LA loss, B3RS sub-batches embedded in instance batches (BET; reconstruction)"
    Params = BETParams
    sampler = "bet"

    def sampler_options(self) -> dict[str, Any]:
        return {**super().sampler_options(), "embed_fraction": self.params.embed_fraction}
