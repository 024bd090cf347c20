"""Stage two of the decoupled methods (cRT, τ-norm, LWS, NCM, LORT, post-hoc logit adjustment).

A decoupled trial loads the model its stage-1 method trained (the shared backbone: same dataset, ratio,
seed, model and recipe), freezes its weights, and hands a `StageTwo` to the method's `fit_classifier`.
`StageTwo` offers what those methods share: features of the training, validation and test images, the
stage-1 head, a loop that trains a new head on the frozen backbone, and scoring on the validation split
(every choice a method makes is made there, never on test, and ties are broken by a stated rule: `choose`).

Features of un-augmented images are computed once per backbone and cached beside it (`features.pt`), so
six decoupled methods on one backbone pay for one pass. Head training can instead feed augmented images
through the frozen backbone every epoch (`augment=True`, what Kang et al.'s cRT does) at the cost of one
forward pass per epoch. With `bn="train"` (Kang's and LORT's official code) the backbone's BatchNorm layers
run in training mode during those passes, so they normalise with batch statistics and re-estimate their
running statistics on the stage-two sampler's batches; the weights stay frozen. Features are then recomputed
after every epoch, and the best epoch keeps its BatchNorm statistics with its head.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.core.errors import LtbenchError
from harness.data import LTData
from harness.data.samplers import make_sampler
from harness.plugins.method import MethodContext, param
from harness.records.artifacts import CHECKPOINT_FILE, FEATURE_CACHE, RESULT_FILE
from harness.records.storage import TrialFiles
from harness.training.checkpoint import load_checkpoint, save_checkpoint
from harness.training.loop import Learner, LossFn, epoch_generator, train_epoch
from harness.training.metrics import classification_metrics
from harness.training.optim import make_optimizer
from harness.training.recipes import Recipe

CACHE_MAX_FLOATS = 50_000_000  # ~200 MB of float32; bigger feature sets (ImageNet-LT) are recomputed
STAGE_TWO_EPOCH_OFFSET = 100_000  # stage-two epochs draw from generators distinct from stage one's
SPLIT_SOURCES = {"train": "train_plain", "val": "val", "test": "test"}  # feature split -> un-augmented batches
BN_MODES = ("train", "eval")


def check_bn_mode(bn: str, augment: bool) -> None:
    """`bn` must be a known mode, and "train" needs images to flow through the backbone (`augment`)."""
    if bn not in BN_MODES:
        raise ValueError(f"bn must be one of {', '.join(BN_MODES)}, got {bn!r}")
    if bn == "train" and not augment:
        raise ValueError(
            "bn: train re-estimates the backbone's BatchNorm statistics from the images of each stage-two batch, "
            "but augment: false trains on cached features; set bn: eval with augment: false"
        )


@dataclass(frozen=True)
class RetrainParams:
    """Hyperparameters of a head trained on the frozen backbone in Kang et al.'s stage two (cRT, LWS).

    As their code: the lr is the stage-1 recipe's lr times `lr_scale`, the batch the stage-1 batch, an epoch
    int(N / batch) steps whatever the sampler, cosine stepped at the start of every epoch, the backbone's
    BatchNorm in training mode (`bn="train"`), and the epoch best on validation is reported.
    """

    epochs: int = param(10, "stage-two epochs training the head")
    lr_scale: float = param(1.0, "head lr = the stage-1 recipe's lr × lr_scale (batch: the recipe's)")
    weight_decay: float = param(5e-4, "weight decay of the head")
    sampler: str = param("class-aware", "stage-two sampler; class-aware: a class, then 4 of its images")
    augment: bool = param(True, "augmented images through the frozen backbone (false: cached features)")
    bn: str = param("train", "backbone BatchNorm in stage two: train re-estimates statistics (Kang's code), eval")

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.lr_scale <= 0 or self.weight_decay < 0:
            raise ValueError("need epochs >= 1, lr_scale > 0 and weight_decay >= 0")
        check_bn_mode(self.bn, self.augment)


@dataclass(frozen=True)
class TauSearchParams:
    """A grid of τ values; the one with the best validation score is chosen (τ-norm, post-hoc LA)."""

    tau_min: float = param(0.0, "smallest τ of the validation grid")
    tau_max: float = param(2.0, "largest τ of the validation grid")
    tau_steps: int = param(21, "τ values on the grid, tau_min to tau_max")

    def __post_init__(self) -> None:
        if self.tau_steps < 1 or self.tau_max < self.tau_min:
            raise ValueError("need tau_steps >= 1 and tau_max >= tau_min")

    def grid(self) -> list[float]:
        return torch.linspace(self.tau_min, self.tau_max, self.tau_steps).tolist()


@dataclass(frozen=True)
class ValScore:
    """A candidate's validation score: mean per-class accuracy, and mean cross-entropy as the tie-breaker."""

    accuracy: float
    loss: float


def choose(scores: list[ValScore]) -> int:
    """The index of the candidate to keep (a τ on a grid, an epoch of a run).

    Rule: the highest validation mean per-class accuracy; among candidates tied on it, the lowest validation
    cross-entropy; among candidates tied on both, the middle one (in candidate order). A grid point or epoch is
    never preferred just for coming first, which on a small validation split with a plateau of equal
    accuracies would bias τ towards the grid's start and epochs towards the earliest.
    """
    if not scores:
        raise ValueError("nothing to choose from")
    best = max(s.accuracy for s in scores)
    tied = [i for i, s in enumerate(scores) if math.isclose(s.accuracy, best, rel_tol=1e-12, abs_tol=1e-12)]
    lowest = min(scores[i].loss for i in tied)
    tied = [i for i in tied if math.isclose(scores[i].loss, lowest, rel_tol=1e-12, abs_tol=1e-12)]
    return tied[(len(tied) - 1) // 2]


def cosine_per_epoch(epoch: int, epochs: int, shift: int) -> float:
    """lr factor of `epoch` (0-based) under cosine annealing to 0 stepped once per epoch.

    shift = 1 reproduces Kang et al.'s loop, which steps the scheduler at the start of every epoch (so the first
    epoch already runs at ½(1 + cos(π/T)) and the last at 0); shift = 0 steps it after each epoch (LORT's code).
    """
    return 0.5 * (1.0 + math.cos(math.pi * min(epoch + shift, epochs) / epochs))


class _EpochConstantLR(torch.optim.lr_scheduler.LambdaLR):
    """Per-epoch lr factors held constant within the epoch (the shared loop steps its scheduler every batch)."""

    def __init__(self, optimizer: torch.optim.Optimizer, factor: Callable[[int], float], steps_per_epoch: int):
        super().__init__(optimizer, lambda step: factor(step // steps_per_epoch))


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
    """Augmented training images passed through the frozen backbone, batch by batch (in whatever BatchNorm mode
    the caller set on the backbone)."""

    def __init__(self, images, backbone: nn.Module) -> None:
        self.images, self.backbone = images, backbone

    def train_batches(self, indices: torch.Tensor, batch_size: int, generator: torch.Generator) -> Iterator:
        for x, y in self.images.train_batches(indices, batch_size, generator):
            with torch.no_grad():
                features = self.backbone(x)
            yield features, y  # outside no_grad: the consumer's forward pass must record gradients


def load_stage_one(model: nn.Module, stage1: TrialFiles) -> None:
    """Load the finished stage-1 model into `model` and freeze its weights (BatchNorm in eval mode). From a
    remote store its checkpoint is fetched to this node first (a copy fetched before is reused: a finished
    backbone never changes)."""
    if not stage1.exists(RESULT_FILE):
        raise RuntimeError(
            f"the stage-1 backbone in {stage1.where} has not finished; the scheduler trains it before stage two"
        )
    stage1.pull(CHECKPOINT_FILE, reuse=True)
    model.load_state_dict(load_checkpoint(stage1.local_dir / CHECKPOINT_FILE, fall_back=False)["model"])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)


def _buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: b.detach().clone() for name, b in module.named_buffers()}


class StageTwo:
    def __init__(
        self,
        model: nn.Module,
        data: LTData,
        context: MethodContext,
        recipe: Recipe,
        seed: int,
        splits: dict[str, Any],
        stage1: TrialFiles,
        report: Callable[[dict[str, Any]], None],
    ) -> None:
        self.model = model
        self.data = data
        self.context = context
        self.recipe = recipe  # the stage-1 recipe: methods scale their lr and batch from it
        self.seed = seed
        self.splits = splits  # {"train": augmented image batches, "train_plain"/"val"/"test": eval batches}
        self.stage1 = stage1  # the backbone's files: its feature cache is shared by every stage-two trial
        self.report = report
        self.device = next(model.parameters()).device
        self.history: list[dict[str, Any]] = []
        self.effective: list[dict[str, Any]] = []  # each head-training run's effective schedule, for the record
        self.extras: dict[str, float] = {}  # what the shared machinery chose (e.g. the epoch kept)
        self._features: dict[tuple[str, bool], tuple[torch.Tensor, torch.Tensor]] = {}
        self._backbone_changed = False  # BatchNorm statistics re-estimated in stage two: the disk cache is stale

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

    def features(self, split: str, flip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, labels) of un-augmented images of `split` (train, val or test) from the frozen backbone as
        it is now; `flip=True` for the horizontally flipped images (test-time flip)."""
        if (split, flip) not in self._features:
            if not flip and not self._backbone_changed:
                self._features.update(self._load_or_compute_features())
            else:
                self._features[(split, flip)] = self._extract(self.splits[SPLIT_SOURCES[split]], flip)
        return self._features[(split, flip)]

    def scores(self, head: nn.Module, split: str, test_flip: bool = False) -> torch.Tensor:
        """Class scores of `split`; with `test_flip`, the mean of the scores of each image and its flip."""
        head.eval()
        with torch.no_grad():
            scores = torch.cat([head(chunk) for chunk in self.features(split)[0].split(4096)])
            if test_flip:
                flipped = torch.cat([head(chunk) for chunk in self.features(split, flip=True)[0].split(4096)])
                scores = (scores + flipped) / 2
        return scores

    def evaluate(self, head: nn.Module, split: str, test_flip: bool = False) -> dict[str, Any]:
        return self._metrics(self.scores(head, split, test_flip), self.features(split)[1])

    def _metrics(self, scores: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        predictions = scores.argmax(1).cpu().numpy()
        return classification_metrics(predictions, labels.cpu().numpy(), self.data.class_counts)

    def validation_score(self, head: nn.Module, test_flip: bool = False) -> ValScore:
        """What every choice is made on: the validation split's mean per-class accuracy, then its loss."""
        scores, labels = self.scores(head, "val", test_flip), self.features("val")[1]
        accuracy = float(self._metrics(scores, labels)["mean_class_acc"])
        return ValScore(accuracy, float(F.cross_entropy(scores.float(), labels)))

    def search_tau(
        self, make_head: Callable[[float], nn.Module], search: TauSearchParams, test_flip: bool = False
    ) -> tuple[float, nn.Module]:
        """(τ*, its head): the grid value chosen on validation by `choose`'s rule (scored with the test-time
        flip when the method reports with it)."""
        heads = {tau: make_head(tau) for tau in search.grid()}
        chosen = self.select(heads, test_flip)
        return chosen, heads[chosen]

    def select(self, candidates: dict[Any, nn.Module], test_flip: bool = False) -> Any:
        """The candidate chosen on validation by `choose`'s rule (accuracy, then loss, then the middle)."""
        keys = list(candidates)
        return keys[choose([self.validation_score(candidates[k], test_flip) for k in keys])]

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
        parameters: list[nn.Parameter] | list[dict[str, Any]] | None = None,
        select_best_on_val: bool = False,
        bn: str = "eval",
        drop_last: bool = True,
        lr_shift: int = 1,
        test_flip: bool = False,
        after_step: Callable[[], None] | None = None,
    ) -> nn.Module:
        """SGD on the head only, cosine to 0 stepped per epoch; returns the last head, or the epoch chosen on
        validation (`choose`'s rule) with `select_best_on_val`.

        An epoch is int(N / batch) steps whatever the sampler (`drop_last`, Kang's loop: the sampler's draws are
        cut there), or every one of N draws with a partial last batch (`drop_last=False`, LORT's loader).
        `bn` is the backbone's BatchNorm mode while training (see the module docstring); `lr_shift` see
        `cosine_per_epoch`; `test_flip` scores validation on each image and its flip; `after_step` runs after
        every optimiser step (Weight Balancing's MaxNorm projection). `parameters` may be optimiser groups,
        each with its own base "lr" (MiSLAS trains its classifier at a fraction of its scaling's lr).
        """
        check_bn_mode(bn, augment)
        batch = batch_size or self.recipe.batch_size
        head = head.to(self.device)
        train_features, train_labels = self.features("train")
        n = len(train_labels)
        steps = n // batch if drop_last else -(-n // batch)
        if steps < 1:
            raise LtbenchError(f"stage two: batch {batch} is larger than the {n} training images")
        draw = make_sampler(sampler, train_labels.cpu().numpy(), self.num_classes, batch)
        batches = (
            AugmentedFeatureBatches(self.splits["train"], self.model.backbone)
            if augment
            else FeatureBatches(train_features, train_labels)
        )
        params = parameters if parameters is not None else [p for p in head.parameters() if p.requires_grad]
        optimizer = make_optimizer(params, Recipe(epochs, batch, lr, momentum, weight_decay, schedule="cosine"))
        scheduler = _EpochConstantLR(optimizer, lambda e: cosine_per_epoch(e, epochs, lr_shift), steps)
        learner = Learner(head, loss, optimizer, scheduler, after_step=after_step)
        self.effective.append(
            {
                "epochs": epochs,
                "steps_per_epoch": steps,
                "batch_size": batch,
                "lr": lr,
                **({"group_lrs": [g.get("lr", lr) for g in params]} if params and isinstance(params[0], dict) else {}),
                "weight_decay": weight_decay,
                "momentum": momentum,
                "sampler": sampler,
                "augment": augment,
                "bn": bn,
                "lr_schedule": f"cosine per epoch, shift {lr_shift}",
                "select": "best on validation" if select_best_on_val else "last epoch",
                "test_flip": test_flip,
            }
        )
        snapshots, scores = [], []
        for epoch in range(epochs):
            generator = epoch_generator(self.seed, STAGE_TWO_EPOCH_OFFSET + epoch)
            indices = draw.epoch_indices(epoch, epochs, generator)[: steps * batch]
            self.model.backbone.train(bn == "train")
            try:
                train_loss = train_epoch(learner, batches, indices, batch, generator)
            finally:
                self.model.backbone.eval()
            if bn == "train":
                self._backbone_updated()
            score = self.validation_score(head, test_flip)
            row = {
                "epoch": len(self.history) + 1,
                "epochs_total": epochs,
                "train_loss": train_loss,
                "lr": lr * cosine_per_epoch(epoch, epochs, lr_shift),  # the lr this epoch trained with
                "val_mean_class_acc": score.accuracy,
                "val_loss": score.loss,
                "time": time.time(),  # when the epoch ended: its MLflow timestamp
            }
            self.history.append(row)
            self.report(row)
            scores.append(score)
            if select_best_on_val:
                backbone = _buffers(self.model.backbone) if bn == "train" else {}
                snapshots.append((copy.deepcopy(head.state_dict()), backbone))
        if select_best_on_val:
            kept = choose(scores)
            head_state, backbone = snapshots[kept]
            head.load_state_dict(head_state)
            if backbone:
                self.model.backbone.load_state_dict(backbone, strict=False)
                self._backbone_updated()
            self.extras["chosen_epoch"] = float(kept + 1)
        return head

    def retrain(
        self, head: nn.Module, loss: LossFn, params: RetrainParams, parameters: list[nn.Parameter] | None = None
    ) -> nn.Module:
        """`train_head` as Kang et al.'s stage two runs it (see `RetrainParams`)."""
        return self.train_head(
            head,
            loss,
            epochs=params.epochs,
            lr=self.recipe.lr * params.lr_scale,
            weight_decay=params.weight_decay,
            sampler=params.sampler,
            augment=params.augment,
            parameters=parameters,
            select_best_on_val=True,
            bn=params.bn,
            drop_last=True,
            lr_shift=1,
        )

    def _backbone_updated(self) -> None:
        """The backbone's BatchNorm statistics changed: every feature must be recomputed."""
        self._backbone_changed = True
        self._features.clear()

    # -- the feature cache ------------------------------------------------------------------------------
    def _load_or_compute_features(self) -> dict[tuple[str, bool], tuple[torch.Tensor, torch.Tensor]]:
        cache = self.stage1.local_dir / FEATURE_CACHE
        if FEATURE_CACHE in self.stage1.pull(FEATURE_CACHE, reuse=True):
            stored = torch.load(cache, map_location=self.device, weights_only=True)
            return {(split, False): (stored[f"{split}_features"], stored[f"{split}_labels"]) for split in SPLIT_SOURCES}
        computed = {(split, False): self._extract(self.splits[source]) for split, source in SPLIT_SOURCES.items()}
        if sum(f.numel() for f, _ in computed.values()) <= CACHE_MAX_FLOATS:
            flat = {}
            for (split, _), (f, y) in computed.items():
                flat[f"{split}_features"], flat[f"{split}_labels"] = f.cpu(), y.cpu()
            save_checkpoint(cache, flat)  # atomic: concurrent trials may both write, each a whole file
            self.stage1.push(FEATURE_CACHE)  # beside the backbone in the store, for trials on other nodes
        return computed

    def _extract(self, batches, flip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        feats, labels = [], []
        with torch.no_grad():
            for x, y in batches.eval_batches(512):
                feats.append(self.model.features(x.flip(-1) if flip else x).float())
                labels.append(y)
        return torch.cat(feats), torch.cat(labels)
