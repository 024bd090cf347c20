"""Stage two of the decoupled methods (cRT, τ-norm, LWS, NCM, LORT, post-hoc logit adjustment).

A decoupled trial loads the model its stage-1 method trained (the shared backbone: same dataset, ratio,
seed, model and recipe), freezes it (BatchNorm in eval mode, no gradients), and hands a `StageTwo` to the
method's `fit_classifier`. `StageTwo` offers what those methods share: features of the training,
validation and test images, the stage-1 head, a loop that trains a new head on the frozen backbone, and
scoring on the validation split (every choice a method makes is made there, never on test).

Features of un-augmented images are computed once per backbone and cached beside it (`features.pt`), so
six decoupled methods on one backbone pay for one pass. Head training can instead feed augmented images
through the frozen backbone every epoch (`augment=True`, what Kang et al.'s cRT does) at the cost of one
forward pass per epoch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.artifacts import CHECKPOINT_FILE, RESULT_FILE
from harness.data import LTData
from harness.data.samplers import make_sampler
from harness.metrics import classification_metrics
from harness.plugin import MethodContext
from harness.training.checkpoint import load_checkpoint
from harness.training.optim import make_optimizer, make_scheduler
from harness.training.recipes import Recipe

FEATURE_CACHE = "features.pt"
CACHE_MAX_FLOATS = 50_000_000  # ~200 MB of float32; bigger feature sets (ImageNet-LT) are recomputed
STAGE_TWO_EPOCH_OFFSET = 100_000  # stage-two epochs draw from generators distinct from stage one's
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class RetrainParams:
    """Hyperparameters of a head trained on the frozen backbone in Kang et al.'s stage two (cRT, LWS).

    The lr is the stage-1 recipe's lr times `lr_scale` and the batch the stage-1 batch, as in their code.
    """

    epochs: int = 10
    lr_scale: float = 1.0
    weight_decay: float = 5e-4
    sampler: str = "class-aware"
    augment: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.lr_scale <= 0 or self.weight_decay < 0:
            raise ValueError("need epochs >= 1, lr_scale > 0 and weight_decay >= 0")


@dataclass(frozen=True)
class TauSearchParams:
    """A grid of τ values; the one with the best validation score is chosen (τ-norm, post-hoc LA)."""

    tau_min: float = 0.0
    tau_max: float = 2.0
    tau_steps: int = 21

    def __post_init__(self) -> None:
        if self.tau_steps < 1 or self.tau_max < self.tau_min:
            raise ValueError("need tau_steps >= 1 and tau_max >= tau_min")

    def grid(self) -> list[float]:
        return torch.linspace(self.tau_min, self.tau_max, self.tau_steps).tolist()


class _Loss:
    """Adapter so the shared epoch loop (`train_one_epoch`) can train a head with any loss."""

    def __init__(self, fn: LossFn) -> None:
        self.loss = fn


class FeatureBatches:
    """Training batches of precomputed (un-augmented) features."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.features, self.labels = features, labels

    def train_batches(self, indices: torch.Tensor, batch_size: int, generator: torch.Generator) -> Iterator:
        indices = indices.to(self.features.device)
        for start in range(0, len(indices), batch_size):
            idx = indices[start : start + batch_size]
            yield self.features[idx], self.labels[idx]


class AugmentedFeatureBatches:
    """Augmented training images passed through the frozen backbone, batch by batch."""

    def __init__(self, images, backbone: nn.Module) -> None:
        self.images, self.backbone = images, backbone

    def train_batches(self, indices: torch.Tensor, batch_size: int, generator: torch.Generator) -> Iterator:
        for x, y in self.images.train_batches(indices, batch_size, generator):
            with torch.no_grad():
                features = self.backbone(x)
            yield features, y  # outside no_grad: the consumer's forward pass must record gradients


def load_stage_one(model: nn.Module, stage1_dir: Path) -> None:
    """Load the finished stage-1 model into `model` and freeze it."""
    if not (stage1_dir / RESULT_FILE).is_file():
        raise RuntimeError(
            f"the stage-1 backbone in {stage1_dir} has not finished; the scheduler trains it before stage two"
        )
    model.load_state_dict(load_checkpoint(stage1_dir / CHECKPOINT_FILE)["model"])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)


class StageTwo:
    def __init__(
        self,
        model: nn.Module,
        data: LTData,
        context: MethodContext,
        recipe: Recipe,
        seed: int,
        splits: dict[str, Any],
        stage1_dir: Path,
        report: Callable[[dict[str, Any]], None],
    ) -> None:
        self.model = model
        self.data = data
        self.context = context
        self.recipe = recipe  # the stage-1 recipe: methods scale their lr and batch from it
        self.seed = seed
        self.splits = splits  # {"train": augmented image batches, "train_plain"/"val"/"test": eval batches}
        self.stage1_dir = stage1_dir
        self.report = report
        self.device = next(model.parameters()).device
        self.history: list[dict[str, Any]] = []
        self._features: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    # -- what methods read ------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self.context.num_classes

    @property
    def stage1_head(self) -> nn.Module:
        """A trainable copy of the stage-1 classifier."""
        head = copy.deepcopy(self.model.head)
        for p in head.parameters():
            p.requires_grad_(True)
        return head

    def features(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, labels) of un-augmented images of `split` (train, val or test) from the frozen backbone."""
        if not self._features:
            self._features = self._load_or_compute_features()
        return self._features[split]

    def scores(self, head: nn.Module, split: str) -> torch.Tensor:
        features, _ = self.features(split)
        head.eval()
        with torch.no_grad():
            return torch.cat([head(chunk) for chunk in features.split(4096)])

    def evaluate(self, head: nn.Module, split: str) -> dict[str, Any]:
        _, labels = self.features(split)
        predictions = self.scores(head, split).argmax(1)
        return classification_metrics(predictions.cpu().numpy(), labels.cpu().numpy(), self.data.class_counts)

    def val_score(self, head: nn.Module) -> float:
        """Mean per-class accuracy on the validation split: the selection metric of every choice."""
        return float(self.evaluate(head, "val")["mean_class_acc"])

    def search_tau(self, make_head: Callable[[float], nn.Module], search: TauSearchParams) -> tuple[float, nn.Module]:
        """(τ*, its head): the grid value whose head scores best on validation."""
        heads = {tau: make_head(tau) for tau in search.grid()}
        chosen = self.select(heads)
        return chosen, heads[chosen]

    def select(self, candidates: dict[Any, nn.Module]) -> Any:
        """The candidate with the best validation score (the first one on ties)."""
        best_key, best = None, -math.inf
        for key, head in candidates.items():
            score = self.val_score(head)
            if score > best:
                best_key, best = key, score
        return best_key

    # -- training a head on the frozen backbone ----------------------------------------------------
    def train_head(
        self,
        head: nn.Module,
        loss: LossFn,
        *,
        epochs: int,
        lr: float,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        batch_size: int | None = None,
        sampler: str = "instance",
        augment: bool = False,
        parameters: list[nn.Parameter] | None = None,
        select_best_on_val: bool = False,
    ) -> nn.Module:
        """SGD with a cosine schedule on the head only; returns the last head, or the best on validation."""
        from harness.training.trainer import epoch_generator, train_one_epoch

        head = head.to(self.device)
        recipe = Recipe(
            epochs=epochs,
            batch_size=batch_size or self.recipe.batch_size,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            schedule="cosine",
        )
        train_features, train_labels = self.features("train")
        draw = make_sampler(sampler, train_labels.cpu().numpy(), self.num_classes, recipe.batch_size)
        batches = (
            AugmentedFeatureBatches(self.splits["train"], self.model.backbone)
            if augment
            else FeatureBatches(train_features, train_labels)
        )
        params = parameters if parameters is not None else [p for p in head.parameters() if p.requires_grad]
        optimizer = make_optimizer(params, recipe)
        scheduler = make_scheduler(optimizer, recipe, math.ceil(draw.epoch_length() / recipe.batch_size))
        best_state, best_score = None, -math.inf
        for epoch in range(epochs):
            generator = epoch_generator(self.seed, STAGE_TWO_EPOCH_OFFSET + epoch)
            indices = draw.epoch_indices(epoch, epochs, generator)
            train_loss = train_one_epoch(
                head, _Loss(loss), batches, indices, recipe.batch_size, optimizer, scheduler, generator
            )
            score = self.val_score(head)
            row = {
                "epoch": len(self.history) + 1,
                "train_loss": train_loss,
                "lr": optimizer.param_groups[0]["lr"],
                "val_mean_class_acc": score,
            }
            self.history.append(row)
            self.report(row)
            if select_best_on_val and score > best_score:
                best_state, best_score = copy.deepcopy(head.state_dict()), score
        if best_state is not None:
            head.load_state_dict(best_state)
        return head

    def retrain(
        self, head: nn.Module, loss: LossFn, params: RetrainParams, parameters: list[nn.Parameter] | None = None
    ) -> nn.Module:
        """`train_head` with Kang et al.'s stage-two settings."""
        return self.train_head(
            head,
            loss,
            epochs=params.epochs,
            lr=self.recipe.lr * params.lr_scale,
            weight_decay=params.weight_decay,
            sampler=params.sampler,
            augment=params.augment,
            parameters=parameters,
        )

    # -- the feature cache ------------------------------------------------------------------------------
    def _load_or_compute_features(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        cache = self.stage1_dir / FEATURE_CACHE
        if cache.is_file():
            stored = torch.load(cache, map_location=self.device, weights_only=True)
            return {
                split: (stored[f"{split}_features"], stored[f"{split}_labels"]) for split in ("train", "val", "test")
            }
        computed = {
            split: self._extract(self.splits[name])
            for split, name in (("train", "train_plain"), ("val", "val"), ("test", "test"))
        }
        if sum(f.numel() for f, _ in computed.values()) <= CACHE_MAX_FLOATS:
            from harness.training.checkpoint import save_checkpoint

            flat = {}
            for split, (f, y) in computed.items():
                flat[f"{split}_features"], flat[f"{split}_labels"] = f.cpu(), y.cpu()
            save_checkpoint(cache, flat)  # atomic: concurrent trials may both write, each a whole file
        return computed

    def _extract(self, batches) -> tuple[torch.Tensor, torch.Tensor]:
        feats, labels = [], []
        with torch.no_grad():
            for x, y in batches.eval_batches(512):
                feats.append(self.model.features(x).float())
                labels.append(y)
        return torch.cat(feats), torch.cat(labels)
