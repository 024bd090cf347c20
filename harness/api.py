"""The public plugin API: everything a method file imports, from one module.

A method (built in under `methods/`, or shipped by another package through the `ltbench.methods` entry
point) imports only from here; the modules behind these names may move without breaking it.

- `Method`, `register_method`, `MethodContext`, `NoParams`, `param` (a hyperparameter with its one-line help):
  define and register a method (see `Method` for
  its hooks: `loss`, `predict`, `build_head`, `build_model`, `training_step` (given a `TrainingBatch`),
  `state_dict`/`load_state_dict`, `sampler_name`/`sampler_options`, `on_epoch_start`, `after_step`, and
  `fit_classifier` for decoupled methods; `views` and `paired_sampler` ask for extra augmented views of each
  image and a second sampler's batch, handed to `training_step` as `TrainingBatch.views` / `.paired`, a
  `PairedBatch`). `LTModel`: a network as a feature part plus a head.
- `mixup`, `cutmix`, `MixedBatch`, `beta_draw`, `cutmix_box`, `paste_box`, `CutBox`: mixed images and labels
  (mixup, CutMix and its box), drawn from the epoch's generator.
- `StageTwo`, `StageTwoResult`, `RetrainParams`, `TauSearchParams`, `check_bn_mode`: stage two on a frozen
  shared backbone.
- `Sampler`, `register_sampler`: a method's own training sampler.
- `log_prior`, `logit_adjusted_loss`, `effective_number_weights`, `per_class_weighted_mean`, `focal_terms`:
  loss arithmetic shared by several papers.
- `LtbenchError`: raise it for bad input; the CLI prints its one-line message.
"""

from harness.core.errors import LtbenchError
from harness.data.samplers import Sampler, register_sampler
from harness.models.base import LTModel
from harness.plugins.losses import (
    effective_number_weights,
    focal_terms,
    log_prior,
    logit_adjusted_loss,
    per_class_weighted_mean,
)
from harness.plugins.method import (
    Method,
    MethodContext,
    NoParams,
    PairedBatch,
    StageTwoResult,
    TrainingBatch,
    param,
    register_method,
)
from harness.plugins.mixing import CutBox, MixedBatch, beta_draw, cutmix, cutmix_box, mixup, paste_box
from harness.training.decoupled import RetrainParams, StageTwo, TauSearchParams, check_bn_mode

__all__ = [
    "CutBox",
    "LTModel",
    "LtbenchError",
    "Method",
    "MethodContext",
    "MixedBatch",
    "NoParams",
    "PairedBatch",
    "RetrainParams",
    "Sampler",
    "StageTwo",
    "StageTwoResult",
    "TauSearchParams",
    "TrainingBatch",
    "beta_draw",
    "check_bn_mode",
    "cutmix",
    "cutmix_box",
    "effective_number_weights",
    "focal_terms",
    "log_prior",
    "logit_adjusted_loss",
    "mixup",
    "param",
    "paste_box",
    "per_class_weighted_mean",
    "register_method",
    "register_sampler",
]
