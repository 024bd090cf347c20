"""Estimated cost of a trial: seconds on one reference GPU, from what the trial computes.

The scheduler orders trials by these estimates (critical path first, `harness.execution.trial_queue`), the progress
display weighs its ETA by `image_equivalents` (the work alone: the pace it measures on the machine at hand
stands in for the reference GPU's seconds), and the makespan bench (`harness.bench.makespan`) replays a suite on a
simulated cluster with them. None of these needs the seconds to be right, only roughly proportional: a
200-epoch backbone costs far more than ten head epochs on its frozen features, which costs more than a
grid search over cached logits. Every constant below is a named assumption, stated with why; a measured
figure replaces a guessed one (`measured_images_per_s` reads `ltbench bench`'s on a GPU).

What a trial costs, in training-image equivalents (one image through forward and backward = 1):
  end to end:  epochs x training images x the method's `step_cost` (views, experts), plus an evaluation
               pass over validation + test every `eval_every` epochs (and after the last) at FORWARD_SHARE each;
  decoupled:   one forward pass over training, validation and test images (the frozen backbone's features),
               plus, per stage-two epoch, either a forward pass of the augmented training images through the
               backbone (`augment: true`; with `bn: train` also the validation images again, since features
               are recomputed after every epoch) or CACHED_EPOCH_SHARE of a pass (`augment: false`, the head
               alone on cached features). tau-norm's and post-hoc LA's grid searches and NCM's class means
               run on the cached features and cost nothing beyond the feature pass.
Seconds = image equivalents / the model's training images per second, plus TRIAL_OVERHEAD_S.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path

from harness.core.trial import TrialConfig, canonical_json
from harness.data import DATASETS, DataOptions
from harness.experiment.plan import trial_epochs
from harness.plugins.loading import load_methods
from harness.plugins.method import parse_params

# Training images per second of ONE trial of each model on an NVIDIA H100 (bf16 autocast, channels_last,
# the suite's batch size), at the packing its suite uses. ResNet-32 is measured (docs/benchmarks.md): real
# `run_trial` epochs of the cifar-lt recipe on full-size CIFAR-10-LT r=100 files (12,306 images) on an H100
# took 1.51 s alone (8,180 images/s) and 1.82-1.94 s each with four trials sharing the GPU (6,650 images/s
# per trial, the median; 26,400 together), the cifar-lt suite's packing; the figure below is that packed one.
# The 224x224 models are not measured yet: assumptions, arithmetic-bound at 4.1 G / 4.3 G multiply-adds per
# image.
# `ltbench bench --device cuda` figures in results/bench.json replace these (see `measured_images_per_s`).
TRAIN_IMAGES_PER_S: dict[str, float] = {
    "resnet32": 6_650.0,
    "resnet-small-gray": 40_000.0,  # 28x28 grey, ~1.6 M multiply-adds: bound by launches and data
    "resnet50": 2_800.0,
    "resnext50-32x4d": 2_300.0,
}
# Multiply-adds per image (forward) of each built-in model, for a model without a throughput above: its
# images/s is scaled from ResNet-32's by the ratio of multiply-adds (no better than a guess, and said so).
MODEL_MACS: dict[str, float] = {
    "resnet32": 69e6,
    "resnet-small-gray": 1.6e6,
    "resnet50": 4.1e9,
    "resnext50-32x4d": 4.3e9,
}
FALLBACK_MODEL = "resnet32"  # a plugin model with neither figure is costed as ResNet-32
# A forward pass's cost as a share of forward + backward. Arithmetic alone gives 1/3 (backward ~ 2x forward),
# but ResNet-32 on an H100 is bound by kernel launches: the measured stage-two trials (cRT's 10 epochs, LWS's
# 5, LORT's 20 at batch 64, each re-extracting features with `bn: train`) fit 0.6.
FORWARD_SHARE = 0.6
CACHED_EPOCH_SHARE = 0.01  # a head epoch on cached features: a linear layer over stored vectors
# Reading the dataset, building the model, the final evaluation and the uploads: ~3 s measured per H100 trial
# of the cifar-lt suite (process start and imports included; a reused Ray worker skips those), plus margin
# for Ray's placement and MLflow.
TRIAL_OVERHEAD_S = 5.0


def measured_images_per_s(bench_json: Path) -> dict[str, float]:
    """Per model, the training images/s that `ltbench bench` measured on a GPU (its trainer section), if
    `bench_json` holds such figures; {} otherwise (no file, a CPU run, an older format)."""
    try:
        doc = json.loads(bench_json.read_text())
        if "cuda" not in str(doc["settings"]["device"]):
            return {}
        figures = doc["sections"]["trainer"]["figures"]
        return {f["detail"]["model"]: float(f["value"]) for f in figures if f.get("unit") == "images/s"}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def images_per_s(model: str, measured: dict[str, float] | None = None) -> float:
    """Training images/s of one trial of `model` on the reference GPU: measured, else assumed."""
    if measured and model in measured:
        return measured[model]
    if model in TRAIN_IMAGES_PER_S:
        return TRAIN_IMAGES_PER_S[model]
    if model in MODEL_MACS:
        return TRAIN_IMAGES_PER_S[FALLBACK_MODEL] * MODEL_MACS[FALLBACK_MODEL] / MODEL_MACS[model]
    return TRAIN_IMAGES_PER_S[FALLBACK_MODEL]


def _sizes(cfg: TrialConfig) -> tuple[int, int, int]:
    """(training, validation, test) images of the trial's profile, from the dataset's description alone."""
    return _profile_sizes(cfg.dataset, cfg.imbalance_ratio, canonical_json(cfg.data))


@cache
def _profile_sizes(dataset: str, ratio: float, data: str) -> tuple[int, int, int]:
    """Once per dataset, ratio and data options (every seed and method of a suite shares them; ImageNet-LT's
    description reads its split files)."""
    desc = DATASETS.get(dataset).describe(ratio, DataOptions(**json.loads(data)))
    return int(sum(desc.train_counts)), desc.num_val, desc.num_test


def image_equivalents(cfg: TrialConfig) -> float:
    """The trial's work in training-image equivalents (see the module docstring)."""
    train, val, test = _sizes(cfg)
    method = load_methods().get(cfg.method)
    if method.stage1 is None:
        epochs = int(cfg.recipe["epochs"])
        evaluations = epochs // int(cfg.recipe.get("eval_every", 1)) + 1
        return epochs * train * method.step_cost + evaluations * (val + test) * FORWARD_SHARE
    params = parse_params(method, cfg.method_params)
    features = (train + val + test) * FORWARD_SHARE
    if getattr(params, "augment", False):
        per_epoch = (train + (val if getattr(params, "bn", "eval") == "train" else 0)) * FORWARD_SHARE
    else:
        per_epoch = train * FORWARD_SHARE * CACHED_EPOCH_SHARE
    return features + trial_epochs(cfg) * per_epoch


def trial_seconds(cfg: TrialConfig, measured: dict[str, float] | None = None) -> float:
    """Estimated seconds of the trial on the reference GPU (at the trial's own share of it)."""
    return TRIAL_OVERHEAD_S + image_equivalents(cfg) / images_per_s(cfg.model, measured)


def cost_model(bench_json: Path | None = None) -> Callable[[TrialConfig], float]:
    """`trial_seconds` with the throughputs measured in `bench_json` where there are any."""
    measured = measured_images_per_s(bench_json) if bench_json is not None else {}
    return lambda cfg: trial_seconds(cfg, measured)
