"""Which epoch of an end-to-end run a trial keeps: the last, or the one best on validation (`Recipe.keep`).

Kang et al.'s `run_networks.py` keeps the epoch with the best validation accuracy and starts cRT and LWS from
it; LOS's `main_stage1.py` and the Weight Balancing demo keep their best *test* epoch, which ltbench replaces by
the best validation epoch. The score is the validation mean per-class accuracy (ltbench's validation splits
are balanced, so it is their top-1); a later epoch replaces the kept one only when strictly better, so ties
keep the earliest, as the official `>` comparison does. The kept weights travel in the checkpoint, so a
resumed trial keeps the same epoch as an uninterrupted one.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from torch import nn

VALIDATION_SCORE = "val_mean_class_acc"


class KeptEpoch:
    def __init__(self, keep: str, epoch: int | None = None, score: float = -math.inf, weights: dict | None = None):
        self.keep = keep
        self.best_epoch = epoch
        self.best_score = score
        self.weights = weights  # the kept epoch's state dict, until it is restored at the end

    @property
    def by_validation(self) -> bool:
        return self.keep == "best-val"

    @classmethod
    def from_state(cls, keep: str, state: dict[str, Any] | None) -> KeptEpoch:
        if not state:
            return cls(keep)
        return cls(keep, state["epoch"], state["score"], state.get("weights"))

    def state(self, with_weights: bool = True) -> dict[str, Any]:
        """What the checkpoint keeps (the weights only until they are restored into the final model)."""
        return {
            "epoch": self.best_epoch,
            "score": self.best_score,
            "weights": self.weights if with_weights else None,
        }

    def consider(self, epoch: int, row: dict[str, Any], model: nn.Module) -> None:
        """Epoch `epoch` (1-based) just ended with the metrics in `row`: keep its weights if it is the best."""
        if not self.by_validation:
            return
        if VALIDATION_SCORE not in row:
            raise ValueError(f"keep: best-val needs the validation score of every epoch; epoch {epoch} has none")
        score = float(row[VALIDATION_SCORE])
        if score > self.best_score:
            self.best_epoch, self.best_score = epoch, score
            self.weights = copy.deepcopy(model.state_dict())

    def restore(self, model: nn.Module) -> None:
        """Load the kept epoch's weights into `model` (a no-op for `keep: last`, or once restored)."""
        if self.by_validation and self.weights is not None:
            model.load_state_dict(self.weights)

    def epoch(self, last: int) -> int:
        """The 1-based epoch kept: the best on validation, or `last`."""
        return self.best_epoch if self.by_validation and self.best_epoch is not None else last
