"""The method plugin API: what a method file in `methods/` (or a third-party package) implements.

A method is a small class: a name, a one-line description, typed hyperparameters (a dataclass), and hooks.
There are two kinds:

- **End-to-end** methods (`stage1 = None`) train the whole model: they may set the `sampler` (a built-in one
  or their own, registered with `register_sampler`), replace the classifier head (`build_head`), define the
  training `loss` and the prediction rule `predict`, and follow the training with two hooks: `on_epoch_start`
  (e.g. DRW switches its loss weights at an epoch) and `after_step` (e.g. a projection after every optimiser
  step). A method whose step is more than one forward pass and `loss` (mixup's mixed targets, two views, a
  queue, several experts) owns it with `training_step`, which gets a `TrainingBatch` and returns the loss to
  minimise; the engine still does the backward pass, the optimiser and the schedule. State such a method keeps
  across steps (a queue, running counts) is returned by `state_dict` and saved in every per-epoch checkpoint,
  so a resumed trial restores it exactly. `build_model` lets a method build its own network from the dataset's
  (experts sharing early layers), still a feature part plus a head.
- **Decoupled** methods (`stage1 = "ce"`) start from the model that method `stage1` trained with the same
  dataset, ratio, seed, model and recipe: that backbone is trained once and shared by every decoupled method
  (and by the `ce` row itself). They implement `fit_classifier(stage)`, which gets a `StageTwo` (frozen
  backbone features, the stage-1 head, a head-training loop and validation scoring) and returns the new head.
  A decoupled method whose hyperparameters include `stage1_recipe` (a recipe name) starts from a backbone
  trained with that recipe instead of the trial's own (Weight Balancing's tuned weight decay); the plan shares
  it among every method that names the same recipe.

The trainer calls only these hooks, so a method never touches the scheduler, the tracker or the data files.
Method authors import what they need from `harness.api`, the public face of this module.

Third-party methods register through the entry-point group `ltbench.methods`; each entry point names a
module (imported for its `@register_method` side effect) or a `Method` subclass. This module is the
registry they register into and never imports them: `harness.plugins.loading` does.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from harness.core.errors import LtbenchError, unknown_choice
from harness.core.registry import Registry
from harness.core.validation import check_fields
from harness.data.samplers import SAMPLERS
from harness.models.base import LTModel

if TYPE_CHECKING:
    from harness.training.decoupled import StageTwo

T = TypeVar("T")


@dataclass(frozen=True)
class MethodContext:
    """What a method may know about the data: class count and training counts (after the validation carve)."""

    num_classes: int
    class_counts: torch.Tensor  # float, one entry per class

    @property
    def priors(self) -> torch.Tensor:
        """Empirical training prior π_y."""
        return self.class_counts / self.class_counts.sum()


@dataclass(frozen=True)
class NoParams:
    """For methods without hyperparameters."""


@dataclass
class StageTwoResult:
    """What a decoupled method's `fit_classifier` returns.

    `head` maps backbone features to class scores (argmax = prediction). `variants` are extra heads reported
    beside the main one (e.g. τ = 1 next to the τ* chosen on validation), logged as `<variant>_test_top1` etc.
    `extras` are scalars worth logging (e.g. the chosen τ). `test_flip` evaluates every head on each image and its
    horizontal flip, averaging the scores (LORT's official evaluation).
    """

    head: nn.Module
    variants: dict[str, nn.Module] = field(default_factory=dict)
    extras: dict[str, float] = field(default_factory=dict)
    test_flip: bool = False


@dataclass(frozen=True)
class PairedBatch:
    """The batch a method's second sampler (`Method.paired_sampler`) drew beside the main one: its standard view,
    targets, and one view per `Method.views` policy, each normalised like `TrainingBatch.images`."""

    images: torch.Tensor
    targets: torch.Tensor
    views: tuple[torch.Tensor, ...] = ()


@dataclass
class TrainingBatch:
    """One training batch as a method's `training_step` sees it.

    `images` are the engine's augmented, normalised float batch on the trial's device. Every random choice a step
    makes (a mixup λ, a permutation) must be drawn from `generator`, the epoch's generator: a resumed trial
    re-creates it for the epoch it resumes at, so it replays exactly the draws an uninterrupted run makes.
    """

    model: nn.Module
    images: torch.Tensor
    targets: torch.Tensor
    generator: torch.Generator
    epoch: int  # counts from 0
    num_epochs: int
    autocast: Callable[[], AbstractContextManager[Any]]  # the trial's forward-pass precision (bf16 or a no-op)
    views: tuple[torch.Tensor, ...] = ()  # one view of the same images per `Method.views` policy
    paired: PairedBatch | None = None  # the second sampler's batch (`Method.paired_sampler`), else None

    def logits(self, images: torch.Tensor | None = None) -> torch.Tensor:
        """The model's float32 scores of `images` (default: the batch's), the forward pass under the precision."""
        with self.autocast():
            out = self.model(self.images if images is None else images)
        return out.float()


class Method:
    """Base class of every method. Defaults give plain cross-entropy with instance-balanced sampling."""

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type] = NoParams
    sampler: ClassVar[str] = "instance"
    stage1: ClassVar[str | None] = None  # None: end-to-end; else the method whose trained model this reuses
    # Augmentation policies (`harness.data.augment`, e.g. "crop:4+flip+autoaugment+cutout:16") of extra views of
    # every training image: made from the same un-augmented images as `TrainingBatch.images`, each with its own
    # draws from the epoch's generator, handed to `training_step` as `TrainingBatch.views` (in-memory datasets)
    views: ClassVar[tuple[str, ...]] = ()
    # A second training sampler (a registered sampler name) whose batch of the same size accompanies every step
    # as `TrainingBatch.paired` (GLMC's re-balanced stream); the epoch's length stays the main sampler's
    paired_sampler: ClassVar[str | None] = None
    # The work of one training image in this method's step, in forward+backward passes of the dataset's model:
    # 1 for one pass; more for several views, experts or a momentum encoder. Only the cost model reads it (the
    # scheduler's order, the dry run's estimate), so a rough figure serves; say in the method where it comes from
    step_cost: ClassVar[float] = 1.0
    # True for methods whose layers learn statistics from each training batch (Channel Whitening): an epoch then
    # drops its last partial batch, as a DataLoader's drop_last does, instead of learning from a few images
    full_batches: ClassVar[bool] = False

    def __init__(self, params: Any, context: MethodContext) -> None:
        self.params = params
        self.context = context

    # -- end-to-end hooks ---------------------------------------------------------------------------
    def sampler_name(self) -> str:
        """The training sampler: a `sampler` hyperparameter when the method has one, else the class default."""
        return getattr(self.params, "sampler", None) or type(self).sampler

    def sampler_options(self) -> dict[str, Any]:
        """Keyword options for the sampler (e.g. B3RS's group count)."""
        return {}

    def paired_sampler_options(self) -> dict[str, Any]:
        """Keyword options for the paired sampler (`paired_sampler`; e.g. GLMC's re-sampling power)."""
        return {}

    def build_head(self, feature_dim: int, num_classes: int) -> nn.Module | None:
        """A replacement classifier head, or None for the plain linear head."""
        return None

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Training loss of a batch."""
        return F.cross_entropy(logits, targets)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        """Scores whose argmax is the prediction (identity unless the method adjusts post hoc)."""
        return logits

    def build_model(self, model: LTModel) -> LTModel | None:
        """A network of the method's own, built from the dataset's `model` (its `backbone` feature part and
        `head`, the head already `build_head`'s), or None to train `model` itself. It must still be an `LTModel`
        (features, then a head), so the reports that read features and the head's weights keep working."""
        return None

    def training_step(self, batch: TrainingBatch) -> torch.Tensor:
        """The loss of one training batch, to be minimised. The default is one forward pass and `loss`; a
        method that overrides it owns its step (several views, mixed targets, a queue, several experts)."""
        return self.loss(batch.logits(), batch.targets)

    def state_dict(self) -> dict[str, Any]:
        """State the method keeps across steps (a queue, running counts), saved in each per-epoch checkpoint.
        Tensors come back on the CPU: `load_state_dict` moves them where they belong."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned, when a trial resumes from its checkpoint."""

    def on_epoch_start(self, epoch: int, num_epochs: int) -> None:
        """Called before each end-to-end training epoch (`epoch` counts from 0 to `num_epochs` - 1).

        A trial resumed from a checkpoint calls it again for the epoch it resumes at, so whatever it sets must
        follow from `(epoch, num_epochs)` alone, as DRW's loss weights do.
        """

    def after_step(self, model: nn.Module) -> None:
        """Called after every optimiser step of end-to-end training, with the model being trained.

        For constraints kept by projection (e.g. a max-norm ball); a decoupled method passes its own callable
        to `StageTwo.train_head(after_step=...)` instead.
        """

    # -- decoupled hook -------------------------------------------------------------------------------
    def fit_classifier(self, stage: StageTwo) -> StageTwoResult:
        """Build the new classifier on the frozen stage-1 backbone (decoupled methods only)."""
        raise NotImplementedError(f"method {self.name!r} sets stage1={self.stage1!r} but has no fit_classifier")


METHODS: Registry[type[Method]] = Registry("method")


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: add a method to the registry under `cls.name` (a duplicate name is an error)."""
    for attr in ("name", "description"):
        if not isinstance(getattr(cls, attr, None), str):
            raise TypeError(f"{cls.__name__} must set a string class attribute {attr!r}")
    if not dataclasses.is_dataclass(cls.Params):
        raise TypeError(f"{cls.__name__}.Params must be a dataclass")
    if cls.stage1 is not None and cls.fit_classifier is Method.fit_classifier:
        raise TypeError(f"{cls.__name__} is decoupled (stage1={cls.stage1!r}) and must define fit_classifier")
    if (cls.views or cls.paired_sampler) and cls.training_step is Method.training_step:
        raise TypeError(f"{cls.__name__} asks for views or a paired sampler, which only its own training_step sees")
    METHODS.register(cls.name, cls)
    return cls


HELP_KEY = "help"  # the dataclass field metadata key that holds a hyperparameter's one-line explanation


def param(default: T, help: str) -> T:
    """A hyperparameter field with its one-line explanation, shown by `ltbench methods`:

        epsilon: float = param(0.98, "ε of the target (1-ε)·onehot + ε/K")

    It is `dataclasses.field(default=default, metadata={"help": help})`; either spelling works.
    """
    return dataclasses.field(default=default, metadata={HELP_KEY: help})


@dataclass(frozen=True)
class ParamSpec:
    """One hyperparameter as `ltbench methods` shows it."""

    name: str
    type: str
    default: Any
    help: str = ""


def param_spec(method: type[Method]) -> list[ParamSpec]:
    """Each hyperparameter's name, type, default and help, for `ltbench methods` and error messages."""
    hints = typing.get_type_hints(method.Params)
    spec = []
    for f in dataclasses.fields(method.Params):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        kind = getattr(hints[f.name], "__name__", str(hints[f.name]))
        spec.append(ParamSpec(f.name, kind, default, str(f.metadata.get(HELP_KEY, ""))))
    return spec


def parse_params(method: type[Method], values: dict[str, Any]) -> Any:
    """Build `method.Params` from a dict, rejecting unknown keys and values of the wrong type."""
    hints = typing.get_type_hints(method.Params)
    known = {f.name for f in dataclasses.fields(method.Params)}
    for key in values:
        if key not in known:
            raise unknown_choice(f"hyperparameter of method {method.name!r}", key, known or ["(none)"])
    check_fields(f"method_params.{method.name}", method.Params, values)
    # a float field given an integer (lr: 1) holds the float, so equal values make equal trial keys
    coerced = {k: float(v) if hints[k] is float else v for k, v in values.items()}
    if "sampler" in coerced:
        SAMPLERS.get(coerced["sampler"])  # an unknown sampler is reported with the valid ones
    try:
        return method.Params(**coerced)
    except (TypeError, ValueError) as e:
        raise LtbenchError(f"method {method.name!r}: invalid hyperparameters: {e}") from e
