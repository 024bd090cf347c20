"""Run one trial: build its data, model and method, train with per-epoch checkpoints, evaluate.

The trainer knows nothing about Ray or MLflow: it calls `report(row)` after every epoch and returns the
final result, and the scheduler decides where those go. A trial directory holds `manifest.json` (which
images), `checkpoint.pt` (the last finished epoch) and, once done, `result.json`; a rerun of a finished
trial returns its result without training, and a rerun of an interrupted one resumes from the checkpoint.

Randomness per epoch (sampling order, augmentation) comes from a generator seeded by (seed, epoch), so a
resumed trial replays exactly the epochs an uninterrupted one would run, and on CPU gives equal metrics.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.config import TrialConfig
from harness.data import DATASETS, DataOptions, LTData
from harness.data.base import ArraySplit
from harness.data.pipeline import make_batches
from harness.data.samplers import make_sampler
from harness.metrics import classification_metrics
from harness.models import build_model
from harness.plugin import Method, MethodContext, build_method
from harness.provenance import device_name, package_versions, resolve_device
from harness.training.checkpoint import (
    atomic_write_json,
    load_checkpoint,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from harness.training.optim import make_optimizer, make_scheduler
from harness.training.recipes import Recipe

Reporter = Callable[[dict[str, Any]], None]
EVAL_BATCH = 512
RESULT_FILE, CHECKPOINT_FILE, MANIFEST_FILE = "result.json", "checkpoint.pt", "manifest.json"


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
) -> float:
    """One pass over `indices`; the loss is summed on the device and read once at the end of the epoch."""
    model.train()
    total = torch.zeros((), device=next(model.parameters()).device)
    seen = 0
    for images, targets in batches.train_batches(indices, batch_size, generator):
        loss = method.loss(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.detach() * len(targets)
        seen += len(targets)
    return float(total) / max(seen, 1)


@torch.inference_mode()
def predict(model: torch.nn.Module, method: Method, batches) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    preds, labels = [], []
    for images, targets in batches.eval_batches(EVAL_BATCH):
        preds.append(method.predict(model(images)).argmax(1))
        labels.append(targets)
    return torch.cat(preds).cpu().numpy(), torch.cat(labels).cpu().numpy()


def evaluate(model, method, data: LTData, splits: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: classification_metrics(*predict(model, method, batches), data.class_counts)
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


def run_trial(cfg: TrialConfig, trial_dir: Path, report: Reporter | None = None) -> dict[str, Any]:
    report = report or (lambda row: None)
    trial_dir.mkdir(parents=True, exist_ok=True)
    if (trial_dir / RESULT_FILE).is_file():
        return json.loads((trial_dir / RESULT_FILE).read_text())

    torch.set_num_threads(max(1, int(cfg.resources.get("cpu", 1))))
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    spec = DATASETS.get(cfg.dataset)
    data = spec.build(cfg.imbalance_ratio, DataOptions(**cfg.data))
    atomic_write_json(trial_dir / MANIFEST_FILE, data.manifest)

    context = MethodContext(data.num_classes, torch.tensor(data.train_counts, dtype=torch.float64))
    method = build_method(cfg.method, cfg.method_params, context)
    in_channels = data.train.images.shape[1] if isinstance(data.train, ArraySplit) else 3
    model = build_model(cfg.model, data.num_classes, in_channels).to(device)
    recipe = recipe_of(cfg)
    workers = max(0, int(cfg.resources.get("cpu", 1)) - 1)
    train_batches = make_batches(data.train, data, device, True, spec.pad, spec.flip, workers)
    eval_splits = {
        name: make_batches(split, data, device, False, 0, False, workers)
        for name, split in (("val", data.val), ("test", data.test))
    }
    sampler = make_sampler(method.sampler, data.train.labels, data.num_classes)
    steps_per_epoch = math.ceil(len(data.train) / recipe.batch_size)
    optimizer = make_optimizer(model.parameters(), recipe)
    scheduler = make_scheduler(optimizer, recipe, steps_per_epoch)

    start_epoch, history = 0, []
    checkpoint = load_checkpoint(trial_dir / CHECKPOINT_FILE)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        restore_rng_states(checkpoint["rng"])
        start_epoch, history = checkpoint["epoch"] + 1, checkpoint["history"]

    evaluation = None
    for epoch in range(start_epoch, recipe.epochs):
        started = time.perf_counter()
        generator = epoch_generator(cfg.seed, epoch)
        indices = sampler.epoch_indices(epoch, recipe.epochs, generator)
        loss = train_one_epoch(
            model, method, train_batches, indices, recipe.batch_size, optimizer, scheduler, generator
        )
        if not math.isfinite(loss):
            raise TrialDiverged(f"training loss became {loss} in epoch {epoch + 1}")
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": loss,
            "lr": optimizer.param_groups[0]["lr"],
            "epoch_seconds": time.perf_counter() - started,
            "train_images_per_s": len(indices) / (time.perf_counter() - started),
        }
        if epoch + 1 == recipe.epochs or (epoch + 1) % recipe.eval_every == 0:
            evaluation = evaluate(model, method, data, eval_splits)
            row.update(scalar_metrics(evaluation))
        history.append(row)
        save_checkpoint(
            trial_dir / CHECKPOINT_FILE,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "rng": rng_states(),
                "history": history,
            },
        )
        report(row)

    if evaluation is None:  # resumed after the last epoch's checkpoint
        evaluation = evaluate(model, method, data, eval_splits)
    result = {
        "trial_key": cfg.key,
        "metrics": scalar_metrics(evaluation),
        "per_class_acc": {split: m["per_class_acc"] for split, m in evaluation.items()},
        "class_counts": data.class_counts,
        "train_counts": data.train_counts,
        "history": history,
        "device": device_name(device),
        "versions": package_versions(),
    }
    atomic_write_json(trial_dir / RESULT_FILE, result)
    return result
