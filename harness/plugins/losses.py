"""Loss arithmetic that several long-tail methods share (each method file says which paper uses what).

Notation: z the logits of a batch (B x C), y the targets, n_j the training count of class j, π_j = n_j / N.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def log_prior(priors: torch.Tensor, tau: float) -> torch.Tensor:
    """τ·log π as Menon et al.'s code writes it: log(π^τ + 1e-12) (float32)."""
    return torch.log(priors**tau + 1e-12).float()


def logit_adjusted_loss(logits: torch.Tensor, targets: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on z + offset (the LA loss with offset τ·log π; Balanced Softmax with log π)."""
    return F.cross_entropy(logits + offset.to(logits.device, logits.dtype), targets)


def effective_number_weights(class_counts: torch.Tensor, beta: float) -> torch.Tensor:
    """Cui et al. 2019's class-balanced weights w_j ∝ (1 - β) / (1 - β^n_j), normalised to sum to C.

    β = 0 gives every class weight 1 (what DRW uses before its start epoch); β → 1 approaches inverse class
    frequency. A class with no images gets weight 0 (its term never occurs in a loss).
    """
    counts = class_counts.double()
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    raw = torch.where(counts > 0, (1 - beta) / (1 - beta**counts), torch.zeros((), dtype=torch.float64))
    return (raw / raw.sum() * len(counts)).float()


def per_class_weighted_mean(per_sample: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(1/B) Σ_i w_{y_i} ℓ_i: Cui et al.'s class-balanced reduction (their Eq. 5b, divided by the batch)."""
    return (weights.to(per_sample.device, per_sample.dtype)[targets] * per_sample).mean()


def focal_terms(logits: torch.Tensor, targets: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample softmax focal loss (1 - p_y)^γ · (-log p_y) (Lin et al. 2017's multi-class form)."""
    ce = F.cross_entropy(logits, targets, reduction="none")
    return (1 - torch.exp(-ce)) ** gamma * ce
