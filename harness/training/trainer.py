"""Run one trial: build its data, model and method, train with per-epoch checkpoints, evaluate.

The trainer knows nothing about Ray or MLflow: it calls `report(row)` after every epoch and returns the
final result, and the scheduler decides where those go. A trial's files (in its `Storage`) are
`manifest.json` (which images), `checkpoint.pt` (the last finished epoch) and, once done, `result.json`; a
rerun of a finished trial returns its result without training, and a rerun of an interrupted one resumes from
the checkpoint, on whichever node it runs. Each attempt (the node and the epoch it started from) is kept in
the checkpoint and the result.

Randomness per epoch (sampling order, augmentation) comes from a generator seeded by (seed, epoch), so a
resumed trial replays exactly the epochs an uninterrupted one would run, and on CPU gives equal metrics.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from harness.artifacts import ANALYSIS_FILE, CHECKPOINT_FILE, MANIFEST_FILE, RESULT_FILE
from harness.config import TrialConfig
from harness.data import DATASETS, DataOptions, LTData
from harness.data.base import ArraySplit
from harness.data.pipeline import make_batches
from harness.data.samplers import make_sampler
from harness.metrics import classification_metrics
from harness.models import LTModel, build_model
from harness.plugin import Method, MethodContext, build_method
from harness.provenance import device_name, package_versions, resolve_device
from harness.storage import Storage, TrialFiles
from harness.training.analysis import InputMoments, final_linear, save_analysis
from harness.training.checkpoint import (
    atomic_write_json,
    load_checkpoint,
    previous_of,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from harness.training.decoupled import StageTwo, load_stage_one
from harness.training.optim import make_optimizer, make_scheduler
from harness.training.precision import FP32, Precision, memory_format, resolve_precision
from harness.training.recipes import Recipe

Reporter = Callable[[dict[str, Any]], None]
EVAL_BATCH = 512


class TrialDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def recipe_of(cfg: TrialConfig) -> Recipe:
    return Recipe(**{**cfg.recipe, "milestones": tuple(cfg.recipe.get("milestones", ()))})


def train_one_epoch(
    model: torch.nn.Module,
    method: Method,
    batches,
    indices: torch.Tensor,
    batch_size: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    precision: Precision = FP32,
    after_step: Callable[[], None] | None = None,
) -> float:
    """One pass over `indices`; the loss is summed on the device and read once at the end of the epoch, so
    no step waits for the device. The forward pass runs under `precision`; the loss sees float32 logits so a
    method's loss arithmetic never runs in bf16 (`.float()` is a no-op on the fp32 path). `after_step` runs
    after every optimiser step (a method's projection, e.g. MaxNorm)."""
    model.train()
    total = torch.zeros((), device=next(model.parameters()).device)
    seen = 0
    for images, targets in batches.train_batches(indices, batch_size, generator):
        with precision.autocast():
            logits = model(images)
        loss = method.loss(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step()
        scheduler.step()
        total += loss.detach() * len(targets)
        seen += len(targets)
    return float(total) / max(seen, 1)


@torch.inference_mode()
def predict(
    model: torch.nn.Module, method: Method, batches, precision: Precision = FP32
) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    preds, labels = [], []
    for images, targets in batches.eval_batches(EVAL_BATCH):
        with precision.autocast():
            logits = model(images)
        preds.append(method.predict(logits.float()).argmax(1))
        labels.append(targets)
    return torch.cat(preds).cpu().numpy(), torch.cat(labels).cpu().numpy()


def evaluate(
    model, method, data: LTData, splits: dict[str, Any], precision: Precision = FP32
) -> dict[str, dict[str, Any]]:
    return {
        name: classification_metrics(*predict(model, method, batches, precision), data.class_counts)
        for name, batches in splits.items()
    }


def scalar_metrics(evaluation: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Flatten {'val': {...}, 'test': {...}} to 'val_top1', 'test_many_acc', ... (lists dropped)."""
    return {
        f"{split}_{name}": value
        for split, metrics in evaluation.items()
        for name, value in metrics.items()
        if not isinstance(value, list)
    }


@dataclass
class TrialSetup:
    """Everything a trial builds before training, shared by the end-to-end and decoupled paths."""

    cfg: TrialConfig
    device: torch.device
    data: LTData
    method: Method
    recipe: Recipe
    model: LTModel
    splits: dict[str, Any]  # train (augmented), train_plain, val, test batch sources

    @classmethod
    def build(cls, cfg: TrialConfig) -> TrialSetup:
        torch.set_num_threads(max(1, int(cfg.resources.get("cpu", 1))))
        seed_everything(cfg.seed)
        device = resolve_device(cfg.device)
        spec = DATASETS.get(cfg.dataset)
        data = spec.build(cfg.imbalance_ratio, DataOptions(**cfg.data).for_seed(cfg.seed))
        context = MethodContext(data.num_classes, torch.tensor(data.train_counts, dtype=torch.float64))
        method = build_method(cfg.method, cfg.method_params, context)
        in_channels = data.train.images.shape[1] if isinstance(data.train, ArraySplit) else 3
        model = build_model(cfg.model, data.num_classes, in_channels)
        head = method.build_head(model.feature_dim, data.num_classes)
        if head is not None:
            model.head = head
        workers = max(0, int(cfg.resources.get("cpu", 1)) - 1)
        recipe = recipe_of(cfg)
        nhwc = recipe.channels_last
        splits = {
            "train": make_batches(data.train, data, device, True, spec.pad, spec.flip, workers, nhwc),
            **{
                name: make_batches(split, data, device, False, 0, False, workers, nhwc)
                for name, split in (("train_plain", data.train), ("val", data.val), ("test", data.test))
            },
        }
        model = model.to(device, memory_format=memory_format(recipe))
        return cls(cfg, device, data, method, recipe, model, splits)


@dataclass
class Outcome:
    """What either path hands to `finish`: evaluations of the final classifier and its variants."""

    evaluation: dict[str, dict[str, Any]]
    history: list[dict[str, Any]]
    head: torch.nn.Module
    moments: InputMoments
    variants: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    extras: dict[str, float] = field(default_factory=dict)
    effective: dict[str, Any] = field(default_factory=dict)  # what actually ran, where it differs from the config
    attempts: list[dict[str, Any]] = field(default_factory=list)  # each start: {"node", "start_epoch"}


def attempt(node: str, start_epoch: int) -> dict[str, Any]:
    return {"node": node, "start_epoch": start_epoch}


def run_trial(cfg: TrialConfig, storage: Storage, report: Reporter | None = None, node: str = "") -> dict[str, Any]:
    """Train (or finish training) one trial and return its result; a finished trial returns at once.

    The trial's files are `storage.trial(cfg.key)`; a decoupled trial finds its stage-1 backbone in the same
    store. `node` names where this attempt runs (Ray's node id), recorded in the checkpoint and the result.
    """
    report = report or (lambda row: None)
    files = storage.trial(cfg.key)
    if files.exists(RESULT_FILE):
        return files.read_json(RESULT_FILE)
    files.local_dir.mkdir(parents=True, exist_ok=True)
    setup = TrialSetup.build(cfg)
    atomic_write_json(files.local_dir / MANIFEST_FILE, setup.data.manifest)
    if setup.method.stage1 is None:
        outcome = train_end_to_end(setup, files, report, node)
    else:
        from harness.plan import stage1_config

        backbone = stage1_config(cfg)
        assert backbone is not None
        outcome = fit_decoupled(setup, storage.trial(backbone.key), report, node)
    return finish(setup, outcome, files)


def train_end_to_end(setup: TrialSetup, files: TrialFiles, report: Reporter, node: str = "") -> Outcome:
    cfg, model, method, recipe = setup.cfg, setup.model, setup.method, setup.recipe
    precision = resolve_precision(recipe.precision, setup.device)
    sampler = make_sampler(
        method.sampler_name(),
        setup.data.train.labels,
        setup.data.num_classes,
        recipe.batch_size,
        **method.sampler_options(),
    )
    # only a method that defines the hook pays a call per step
    after_step = None if type(method).after_step is Method.after_step else (lambda: method.after_step(model))
    # a method with batch-statistics layers drops the epoch's last partial batch (see `Method.full_batches`)
    draws = sampler.epoch_length()
    keep = max(1, draws // recipe.batch_size) * recipe.batch_size if method.full_batches else draws
    optimizer = make_optimizer(model.parameters(), recipe)
    scheduler = make_scheduler(optimizer, recipe, math.ceil(keep / recipe.batch_size))
    eval_splits = {name: setup.splits[name] for name in ("val", "test")}

    start_epoch, history, attempts = 0, [], []
    checkpoint_path = files.local_dir / CHECKPOINT_FILE
    files.pull(CHECKPOINT_FILE, previous_of(checkpoint_path).name)  # a remote store has no .prev: dropped here
    checkpoint = load_checkpoint(checkpoint_path)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        restore_rng_states(checkpoint["rng"])
        start_epoch, history = checkpoint["epoch"] + 1, checkpoint["history"]
        attempts = checkpoint.get("attempts", [])
    attempts = [*attempts, attempt(node, start_epoch)]

    def evaluate_final() -> dict[str, dict[str, Any]]:
        """Validation and test, capturing the classifier's test-set inputs for `analysis.npz` on the way."""
        linear = final_linear(model.head)
        hook = linear.register_forward_pre_hook(moments.hook) if linear is not None else None
        try:
            test = evaluate(model, method, setup.data, {"test": setup.splits["test"]}, precision)
        finally:
            if hook is not None:
                hook.remove()
        return {**evaluate(model, method, setup.data, {"val": setup.splits["val"]}, precision), **test}

    moments = InputMoments()
    evaluation = None
    for epoch in range(start_epoch, recipe.epochs):
        started = time.perf_counter()
        generator = epoch_generator(cfg.seed, epoch)
        method.on_epoch_start(epoch, recipe.epochs)
        indices = sampler.epoch_indices(epoch, recipe.epochs, generator)[:keep]
        loss = train_one_epoch(
            model,
            method,
            setup.splits["train"],
            indices,
            recipe.batch_size,
            optimizer,
            scheduler,
            generator,
            precision,
            after_step=after_step,
        )
        if not math.isfinite(loss):
            raise TrialDiverged(f"training loss became {loss} in epoch {epoch + 1}")
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": loss,
            "lr": optimizer.param_groups[0]["lr"],
            "epoch_seconds": time.perf_counter() - started,
            "train_images_per_s": len(indices) / (time.perf_counter() - started),
            "time": time.time(),  # when the epoch ended: its MLflow timestamp
        }
        if epoch + 1 == recipe.epochs:
            evaluation = evaluate_final()
            row.update(scalar_metrics(evaluation))
        elif (epoch + 1) % recipe.eval_every == 0:
            row.update(scalar_metrics(evaluate(model, method, setup.data, eval_splits, precision)))
        history.append(row)
        save_checkpoint(
            checkpoint_path,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "rng": rng_states(),
                "history": history,
                "attempts": attempts,
            },
        )
        files.push(CHECKPOINT_FILE)
        report(row)

    if evaluation is None:  # resumed after the last epoch's checkpoint
        evaluation = evaluate_final()
    return Outcome(evaluation, history, model.head, moments, attempts=attempts)


def fit_decoupled(setup: TrialSetup, backbone: TrialFiles, report: Reporter, node: str = "") -> Outcome:
    """Stage two: the method fits a new head on the frozen stage-1 backbone (no checkpoint: it is short
    and deterministic, so an interrupted stage two simply runs again)."""
    load_stage_one(setup.model, backbone)
    stage = StageTwo(
        setup.model,
        setup.data,
        setup.method.context,
        setup.recipe,
        setup.cfg.seed,
        setup.splits,
        backbone,
        report,
    )
    fitted = setup.method.fit_classifier(stage)
    head = fitted.head.to(setup.device)
    flip = fitted.test_flip
    evaluation = {split: stage.evaluate(head, split, flip) for split in ("val", "test")}
    variants = {
        name: {split: stage.evaluate(h.to(setup.device), split, flip) for split in ("val", "test")}
        for name, h in fitted.variants.items()
    }
    moments = InputMoments()
    moments.add(stage.features("test")[0])
    extras = {**stage.extras, **fitted.extras}
    effective: dict[str, Any] = {"stage2_test_flip": flip}
    if len(stage.effective) == 1:
        effective["stage2"] = stage.effective[0]
    elif stage.effective:
        effective["stage2"] = {str(i + 1): schedule for i, schedule in enumerate(stage.effective)}
    return Outcome(evaluation, stage.history, head, moments, variants, extras, effective, [attempt(node, 0)])


def effective_settings(setup: TrialSetup, outcome: Outcome) -> dict[str, Any]:
    """What actually ran where the config leaves it open: the precision "auto" resolved to, the stage-two
    schedule (epochs, steps per epoch, batch, lr, BatchNorm mode), and cuDNN's determinism settings on a GPU."""
    ran: dict[str, Any] = {"precision": resolve_precision(setup.recipe.precision, setup.device).name}
    if setup.device.type == "cuda":
        ran["cudnn"] = {
            "deterministic": torch.backends.cudnn.deterministic,
            "benchmark": torch.backends.cudnn.benchmark,
            "allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        }
    return {**ran, **outcome.effective}


def finish(setup: TrialSetup, outcome: Outcome, files: TrialFiles) -> dict[str, Any]:
    """Write `analysis.npz` and `result.json`, and upload them and the manifest to a remote store, the result
    last (its presence in the store means the trial is complete); then a remote store's scratch copy goes."""
    trial_dir = files.local_dir
    save_analysis(trial_dir / ANALYSIS_FILE, outcome.head, outcome.moments, setup.data.class_counts)
    result = {
        "trial_key": setup.cfg.key,
        "metrics": {**scalar_metrics(outcome.evaluation), **outcome.extras},
        "variants": {name: scalar_metrics(ev) for name, ev in outcome.variants.items()},
        "per_class_acc": {split: m["per_class_acc"] for split, m in outcome.evaluation.items()},
        "class_counts": setup.data.class_counts,
        "train_counts": setup.data.train_counts,
        "history": outcome.history,
        "device": device_name(setup.device),
        "effective": effective_settings(setup, outcome),  # incl. the precision "auto" became here
        "versions": package_versions(),
        "attempts": outcome.attempts,
    }
    atomic_write_json(trial_dir / RESULT_FILE, result)
    previous_of(trial_dir / CHECKPOINT_FILE).unlink(missing_ok=True)  # only a resume needed it
    files.push(MANIFEST_FILE, ANALYSIS_FILE, RESULT_FILE)
    files.release()
    return result
