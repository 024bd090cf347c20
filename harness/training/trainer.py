"""Run one trial: build its data, model and method, train with per-epoch checkpoints, evaluate.

The trainer knows nothing about Ray, MLflow, the plan or the plugin loader: it is handed the trial's config,
its store, its method class and the key of the backbone it stands on (decoupled trials), calls `report(row)`
after every epoch and returns the final result; the worker decides where those go. A trial's files (in its
`Storage`) are `manifest.json` (which images), `checkpoint.pt` (the last finished epoch) and, once done,
`result.json`; a rerun of a finished trial returns its result without training, and a rerun of an interrupted
one resumes from the checkpoint, on whichever node it runs. Each attempt (the node and the epoch it started
from) is kept in the checkpoint and the result.

The epoch loop, its one explicit step and evaluation live in `harness.training.loop`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.core.errors import LtbenchError
from harness.core.files import atomic_write_json, previous_of
from harness.core.trial import TrialConfig
from harness.data import DATASETS, DataOptions, LTData
from harness.data.augment import check_policy
from harness.data.base import ArraySplit
from harness.data.pipeline import TensorBatches, WithViews, make_batches
from harness.data.samplers import make_sampler
from harness.models import LTModel, build_model
from harness.plugins.method import METHODS, Method, MethodContext, parse_params
from harness.records.artifacts import ANALYSIS_FILE, CHECKPOINT_FILE, MANIFEST_FILE, RESULT_FILE
from harness.records.provenance import device_name, package_versions, resolve_device
from harness.records.storage import Storage, TrialFiles
from harness.training.analysis import InputMoments, final_linear, save_analysis
from harness.training.captured import make_step, step_record
from harness.training.checkpoint import load_checkpoint, restore_rng_states, rng_states, save_checkpoint
from harness.training.decoupled import StageTwo, load_stage_one
from harness.training.device_stats import epoch_started, epoch_stats
from harness.training.kept_epoch import KeptEpoch
from harness.training.loop import (
    Learner,
    epoch_generator,
    epoch_steps,
    evaluate,
    run_to_end,
    scalar_metrics,
    seed_everything,
)
from harness.training.method_step import method_step, owns_step
from harness.training.optim import make_optimizer, make_scheduler, parameter_groups
from harness.training.precision import memory_format, resolve_precision
from harness.training.recipes import Recipe
from harness.training.test_time import adapt_on_unlabeled

Reporter = Callable[[dict[str, Any]], None]


class TrialDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def own_model(method: Method, model: LTModel) -> LTModel:
    """The method's own network built from the dataset's `model` (`Method.build_model`), else `model`."""
    built = method.build_model(model)
    if built is None:
        return model
    if not isinstance(built, LTModel):
        raise TypeError(f"method {method.name!r}: build_model must return an LTModel (features, then a head)")
    return built


def check_views(method: Method, train: object) -> None:
    """A method's view policies name known ops, and its data is held in memory (where views are made)."""
    for policy in method.views:
        check_policy(policy)
    if not isinstance(train, TensorBatches):
        raise LtbenchError(
            f"method {method.name!r} trains on extra views of each image, which ltbench makes for in-memory "
            "datasets (CIFAR-LT, Fashion-MNIST-LT) only; pick one of those datasets"
        )


def recipe_of(cfg: TrialConfig) -> Recipe:
    return Recipe(**{**cfg.recipe, "milestones": tuple(cfg.recipe.get("milestones", ()))})


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
    def build(cls, cfg: TrialConfig, method_class: type[Method]) -> TrialSetup:
        torch.set_num_threads(max(1, int(cfg.resources.get("cpu", 1))))
        seed_everything(cfg.seed)
        device = resolve_device(cfg.device)
        spec = DATASETS.get(cfg.dataset)
        options = DataOptions(**cfg.data).for_seed(cfg.seed)
        data = spec.build(cfg.imbalance_ratio, options)
        context = MethodContext(data.num_classes, torch.tensor(data.train_counts, dtype=torch.float64))
        method = method_class(parse_params(method_class, cfg.method_params), context)
        in_channels = data.train.images.shape[1] if isinstance(data.train, ArraySplit) else 3
        model = build_model(cfg.model, data.num_classes, in_channels)
        head = method.build_head(model.feature_dim, data.num_classes)
        if head is not None:
            model.head = head
        if method.stage1 is None:  # a decoupled trial loads its stage-1 method's network as that built it
            model = own_model(method, model)
        elif method.stage1 in METHODS:  # ... so it builds that network too (the backbone trial's default params)
            stage1 = METHODS.get(method.stage1)
            model = own_model(stage1(parse_params(stage1, {}), context), model)
        workers = max(0, int(cfg.resources.get("cpu", 1)) - 1)
        recipe = recipe_of(cfg)
        nhwc = recipe.channels_last
        splits = {
            "train": make_batches(
                data.train, data, device, True, spec.pad, spec.flip, workers, nhwc, options.augmentation
            ),
            **{
                name: make_batches(split, data, device, False, 0, False, workers, nhwc)
                for name, split in (("train_plain", data.train), ("val", data.val), ("test", data.test))
            },
        }
        model = model.to(device, memory_format=memory_format(recipe))
        return cls(cfg, device, data, method, recipe, model, splits)


@dataclass
class TrainedClassifier:
    """What either path hands to `write_result`: the final classifier, its evaluations and its variants'."""

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


def run_trial(
    cfg: TrialConfig,
    storage: Storage,
    method_class: type[Method],
    backbone: str | None = None,
    report: Reporter | None = None,
    node: str = "",
) -> dict[str, Any]:
    """Train (or finish training) one trial and return its result; a finished trial returns at once.
    (`trial_steps` is the same, one training step at a time.)"""
    return run_to_end(trial_steps(cfg, storage, method_class, backbone, report, node))


def trial_steps(
    cfg: TrialConfig,
    storage: Storage,
    method_class: type[Method],
    backbone: str | None = None,
    report: Reporter | None = None,
    node: str = "",
) -> Generator[None, None, dict[str, Any]]:
    """`run_trial` as a generator that yields after every training step and returns the result, so that a
    group of trials in one process (`harness.training.group`) can interleave their steps.

    The trial's files are `storage.trial(cfg.key)`; a decoupled trial (`method_class.stage1` set) stands on the
    finished trial `backbone` (a key in the same store, from the plan). `node` names where this attempt runs
    (Ray's node id), recorded in the checkpoint and the result.
    """
    if method_class.name != cfg.method:
        raise ValueError(f"trial {cfg.key} is method {cfg.method!r}, but was handed {method_class.name!r}")
    if (method_class.stage1 is None) != (backbone is None):
        raise ValueError(f"trial {cfg.key} ({cfg.method}): a backbone key is needed exactly for a decoupled method")
    report = report or (lambda row: None)
    files = storage.trial(cfg.key)
    if files.exists(RESULT_FILE):
        return files.read_json(RESULT_FILE)
    files.local_dir.mkdir(parents=True, exist_ok=True)
    setup = TrialSetup.build(cfg, method_class)
    atomic_write_json(files.local_dir / MANIFEST_FILE, setup.data.manifest)
    if backbone is None:
        trained = yield from end_to_end_steps(setup, files, report, node)
    else:
        trained = fit_decoupled(setup, storage.trial(backbone), report, node)
    return write_result(setup, trained, files)


def train_end_to_end(setup: TrialSetup, files: TrialFiles, report: Reporter, node: str = "") -> TrainedClassifier:
    return run_to_end(end_to_end_steps(setup, files, report, node))


def end_to_end_steps(
    setup: TrialSetup, files: TrialFiles, report: Reporter, node: str = ""
) -> Generator[None, None, TrainedClassifier]:
    """Train end to end with per-epoch checkpoints, yielding after every training step."""
    cfg, model, method, recipe = setup.cfg, setup.model, setup.method, setup.recipe
    precision = resolve_precision(recipe.precision, setup.device)
    sampler = make_sampler(
        method.sampler_name(),
        setup.data.train.labels,
        setup.data.num_classes,
        recipe.batch_size,
        **method.sampler_options(),
    )
    paired_sampler = None
    if method.paired_sampler is not None:
        paired_sampler = make_sampler(
            method.paired_sampler,
            setup.data.train.labels,
            setup.data.num_classes,
            recipe.batch_size,
            **method.paired_sampler_options(),
        )
    views_wanted = bool(method.views) or paired_sampler is not None
    if views_wanted:
        check_views(method, setup.splits["train"])
    # only a method that defines the hook pays a call per step
    after_step = None if type(method).after_step is Method.after_step else (lambda: method.after_step(model))
    # a method with batch-statistics layers drops the epoch's last partial batch (see `Method.full_batches`)
    draws = sampler.epoch_length()
    keep = max(1, draws // recipe.batch_size) * recipe.batch_size if method.full_batches else draws
    optimizer = make_optimizer(parameter_groups(model, recipe), recipe)
    scheduler = make_scheduler(optimizer, recipe, math.ceil(keep / recipe.batch_size))
    learner = Learner(model, method.loss, optimizer, scheduler, precision, after_step)
    engine_step = make_step(setup.device)  # the eager step, or a CUDA-graph replay of it ($LTBENCH_STEP=graph)
    eval_splits = {name: setup.splits[name] for name in ("val", "test")}
    validation = {"val": setup.splits["val"]}

    start_epoch, history, attempts = 0, [], []
    kept = KeptEpoch(recipe.keep)
    checkpoint_path = files.local_dir / CHECKPOINT_FILE
    files.pull(CHECKPOINT_FILE, previous_of(checkpoint_path).name)  # a remote store has no .prev: dropped here
    checkpoint = load_checkpoint(checkpoint_path)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        restore_rng_states(checkpoint["rng"])
        sampler.load_state_dict(checkpoint.get("sampler", {}))
        if paired_sampler is not None:
            paired_sampler.load_state_dict(checkpoint.get("paired_sampler", {}))
        kept = KeptEpoch.from_state(recipe.keep, checkpoint.get("kept"))
        if "method" in checkpoint:
            method.load_state_dict(checkpoint["method"])
        start_epoch, history = checkpoint["epoch"] + 1, checkpoint["history"]
        attempts = checkpoint.get("attempts", [])
    attempts = [*attempts, attempt(node, start_epoch)]

    adapted: dict[str, Any] = {}  # a transductive method's adaptation: its extras and the split it read

    def evaluate_final() -> dict[str, dict[str, Any]]:
        """Validation and test, capturing the classifier's test-set inputs for `analysis.npz` on the way; a
        transductive method first adapts on its split's unlabeled images (`harness.training.test_time`)."""
        adapted.update(adapt_on_unlabeled(method, model, setup.splits, cfg.seed))
        linear = final_linear(model.head)
        hook = linear.register_forward_pre_hook(moments.hook) if linear is not None else None
        try:
            test = evaluate(model, method.predict, setup.data, {"test": setup.splits["test"]}, precision)
        finally:
            if hook is not None:
                hook.remove()
        return {**evaluate(model, method.predict, setup.data, {"val": setup.splits["val"]}, precision), **test}

    moments = InputMoments()
    evaluation = None
    for epoch in range(start_epoch, recipe.epochs):
        started = time.perf_counter()
        epoch_started(setup.device)
        generator = epoch_generator(cfg.seed, epoch)
        method.on_epoch_start(epoch, recipe.epochs)
        indices = sampler.epoch_indices(epoch, recipe.epochs, generator)[:keep]
        # a method that owns its step gets it per epoch (its draws come from the epoch's generator); every
        # other method trains with the engine's step, eager or a CUDA-graph replay
        step = method_step(method, epoch, recipe.epochs, generator) if owns_step(method) else engine_step
        batches = setup.splits["train"]
        if views_wanted:  # extra views of each image, and the second sampler's batch beside it
            paired = None if paired_sampler is None else paired_sampler.epoch_indices(epoch, recipe.epochs, generator)
            batches = WithViews(batches, method.views, paired)
        loss = yield from epoch_steps(learner, batches, indices, recipe.batch_size, generator, step)
        if not math.isfinite(loss):
            raise TrialDiverged(f"training loss became {loss} in epoch {epoch + 1}")
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": loss,
            "lr": optimizer.param_groups[0]["lr"],
            "epoch_seconds": time.perf_counter() - started,
            "train_images_per_s": len(indices) / (time.perf_counter() - started),
            "time": time.time(),  # when the epoch ended: its MLflow timestamp
            **epoch_stats(setup.device),  # on CUDA: peak memory and GPU utilisation
        }
        last = epoch + 1 == recipe.epochs
        if last and not kept.by_validation:
            evaluation = evaluate_final()
            row.update(scalar_metrics(evaluation))
        elif (epoch + 1) % recipe.eval_every == 0 or last:
            row.update(scalar_metrics(evaluate(model, method.predict, setup.data, eval_splits, precision)))
        elif kept.by_validation:  # validation after every epoch, so every epoch is a candidate
            row.update(scalar_metrics(evaluate(model, method.predict, setup.data, validation, precision)))
        kept.consider(epoch + 1, row, model)
        if last and kept.by_validation:
            kept.restore(model)
            evaluation = evaluate_final()
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
                "sampler": sampler.state_dict(),
                "paired_sampler": {} if paired_sampler is None else paired_sampler.state_dict(),
                "kept": kept.state(),
                "method": method.state_dict(),  # a queue, running counts: restored with the model on resume
            },
        )
        files.push(CHECKPOINT_FILE)
        report(row)

    if evaluation is None:  # resumed after the last epoch's checkpoint
        kept.restore(model)
        evaluation = evaluate_final()
    if kept.by_validation:  # the checkpoint stage two loads holds the kept epoch's weights
        checkpoint = load_checkpoint(checkpoint_path, fall_back=False)
        save_checkpoint(checkpoint_path, {**checkpoint, "model": model.state_dict(), "kept": kept.state(False)})
        files.push(CHECKPOINT_FILE)
    effective = {
        "kept_epoch": kept.epoch(recipe.epochs),
        "step": step_record(engine_step),
        **adapted.get("effective", {}),
    }
    extras = {"kept_epoch": float(kept.epoch(recipe.epochs)), **adapted.get("extras", {})}
    return TrainedClassifier(
        evaluation, history, model.head, moments, extras=extras, effective=effective, attempts=attempts
    )


def fit_decoupled(setup: TrialSetup, backbone: TrialFiles, report: Reporter, node: str = "") -> TrainedClassifier:
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
    return TrainedClassifier(evaluation, stage.history, head, moments, variants, extras, effective, [attempt(node, 0)])


def effective_settings(setup: TrialSetup, trained: TrainedClassifier) -> dict[str, Any]:
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
        # a grouped trial may step on a stream of its own ($LTBENCH_GROUP_STREAMS, harness.training.group)
        own = torch.cuda.current_stream(setup.device) != torch.cuda.default_stream(setup.device)
        ran["cuda_stream"] = "own" if own else "default"
    return {**ran, **trained.effective}


def write_result(setup: TrialSetup, trained: TrainedClassifier, files: TrialFiles) -> dict[str, Any]:
    """Write `analysis.npz` and `result.json`, and upload them and the manifest to a remote store, the result
    last (its presence in the store means the trial is complete); then a remote store's scratch copy goes."""
    trial_dir = files.local_dir
    save_analysis(trial_dir / ANALYSIS_FILE, trained.head, trained.moments, setup.data.class_counts)
    result = {
        "trial_key": setup.cfg.key,
        "metrics": {**scalar_metrics(trained.evaluation), **trained.extras},
        "variants": {name: scalar_metrics(ev) for name, ev in trained.variants.items()},
        "per_class_acc": {split: m["per_class_acc"] for split, m in trained.evaluation.items()},
        "class_counts": setup.data.class_counts,
        "train_counts": setup.data.train_counts,
        "history": trained.history,
        "device": device_name(setup.device),
        "effective": effective_settings(setup, trained),  # incl. the precision "auto" became here
        "versions": package_versions(),
        "attempts": trained.attempts,
    }
    atomic_write_json(trial_dir / RESULT_FILE, result)
    previous_of(trial_dir / CHECKPOINT_FILE).unlink(missing_ok=True)  # only a resume needed it
    files.push(MANIFEST_FILE, ANALYSIS_FILE, RESULT_FILE)
    files.release()
    return result
