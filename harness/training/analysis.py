"""What reports need from a trained classifier beyond accuracy: weight norms and input-channel correlation.

Saved per trial as `analysis.npz`: `weight_norm` (C,) is the L2 norm of each class's row of the effective
classifier (after τ-norm or LWS scaling), `feature_corr` (d, d) the correlation matrix of the classifier's
input channels on the test set (after whitening, for Channel Whitening), `class_counts` the LT counts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


def final_linear(head: nn.Module) -> nn.Linear | None:
    """The linear layer that produces the logits: the head itself, or its `linear` attribute."""
    if isinstance(head, nn.Linear):
        return head
    linear = getattr(head, "linear", None)
    return linear if isinstance(linear, nn.Linear) else None


def effective_weight(head: nn.Module) -> torch.Tensor | None:
    """The (C, d) matrix whose rows score each class: a head may define `effective_weight()` itself."""
    if hasattr(head, "effective_weight"):
        return head.effective_weight().detach()
    linear = final_linear(head)
    return None if linear is None else linear.weight.detach()


class InputMoments:
    """Running first and second moments of a layer's input, for its channel correlation matrix."""

    def __init__(self) -> None:
        self.n = 0
        self.total: torch.Tensor | None = None
        self.outer: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().double().flatten(1)
        if self.total is None:
            self.total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
            self.outer = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64, device=x.device)
        self.n += len(x)
        self.total += x.sum(0)
        self.outer += x.T @ x

    def hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self.add(inputs[0])

    def correlation(self) -> np.ndarray:
        if self.total is None or self.n < 2:
            return np.zeros((0, 0))
        mean = self.total / self.n
        cov = self.outer / self.n - torch.outer(mean, mean)
        std = cov.diagonal().clamp(min=1e-12).sqrt()
        return (cov / torch.outer(std, std)).cpu().numpy()


def save_analysis(path: Path, head: nn.Module, moments: InputMoments, class_counts: list[int]) -> None:
    weight = effective_weight(head)
    norms = np.zeros(0) if weight is None else weight.norm(dim=1).cpu().numpy()
    corr = moments.correlation()
    if corr.size > 512 * 512:  # keep the artifact small for 2048-d features
        corr = corr.astype(np.float16)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, weight_norm=norms, feature_corr=corr, class_counts=np.asarray(class_counts))
    tmp.replace(path)
