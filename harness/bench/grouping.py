"""(f) grouping: K trials in one process (`harness.training.group`), eager, captured and (on a GPU) eager with a
CUDA stream per trial, against one trial.

Each side trains K independent copies of the case's model (own optimiser, schedule, sampler generator and
step), their steps interleaved by `run_group` exactly as a grouped worker runs them (its RNG swaps
included), through the real batch pipeline (`TensorBatches`: gather and augmentation on the device). A
figure is the group's images/s (all K trials together) against one trial's in the same process (K = 1,
eager, same precision), timed in the same rounds; its detail also gives the ratio to the bare hand-written
loop and, on a GPU, the fraction of the reachable FLOP/s (the counted FLOPs per image times images/s, over
a dense matmul timed here) and the peak memory per trial.

On a CPU the section says whether grouping pays for the quick suite's model (K = 1, 2, 4, eager fp32):
`--group-size auto` reads that answer (`harness.execution.grouping`). On a GPU it measures ResNet-32 at
the cifar-lt recipe: K = 1, 2, 4, 8, 16, eager, captured (`harness.training.captured`) and eager with each
trial on its own CUDA stream ($LTBENCH_GROUP_STREAMS), fp32 and bf16, and turns the fastest of each into the
cifar-lt suite's hours on one GPU (its training image equivalents from the cost model over the aggregate
images/s: a bound that leaves out per-trial overheads and the wait of stage two on its backbone).
"""

from __future__ import annotations

import copy
import gc
import math
import statistics
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from harness.bench.cases import BenchCase
from harness.bench.common import Figure, Section, compare
from harness.bench.training import bare_loop, bf16_support, image_flops, matmul
from harness.data.pipeline import TensorBatches
from harness.data.samplers import make_sampler
from harness.execution.costs import image_equivalents
from harness.execution.grouping import GROUPING_PAYS, GROUPING_SECTION
from harness.experiment.plan import make_plan
from harness.experiment.suite import build_suite
from harness.models import build_model
from harness.training.captured import CapturedStep
from harness.training.group import run_group
from harness.training.loop import Learner, epoch_generator, epoch_steps, training_step
from harness.training.optim import make_optimizer, make_scheduler
from harness.training.precision import Precision, memory_format, resolve_precision

TITLE = "(f) grouping: K trials per process (eager / captured) vs one trial per process"
GROUP_SIZES = {"cpu": (1, 2, 4), "cuda": (1, 2, 4, 8, 16)}
SUITE = "cifar-lt"
GIB = 2**30


def group_loop(
    initial: torch.nn.Module,
    batches: TensorBatches,
    case: BenchCase,
    precision: Precision,
    k: int,
    captured: bool,
    streams: bool = False,
) -> Callable[[], int]:
    """One epoch of K trials per call, their steps interleaved by `run_group` (each trial on a CUDA stream of
    its own when `streams`); returns images trained."""
    recipe, device = case.recipe, batches.device
    labels = batches.labels.cpu().numpy()
    full = (len(labels) // recipe.batch_size) * recipe.batch_size  # full batches: one graph shape
    sampler = make_sampler("instance", labels, case.data.num_classes, recipe.batch_size)
    members = []
    for _ in range(k):
        model = copy.deepcopy(initial).to(device, memory_format=memory_format(recipe))
        optimizer = make_optimizer(model.parameters(), recipe)
        scheduler = make_scheduler(optimizer, recipe, full // recipe.batch_size)
        step = CapturedStep() if captured else training_step
        members.append((Learner(model, F.cross_entropy, optimizer, scheduler, precision), step))
    epochs = iter(range(1, 1 << 30))

    def failed(key: str, error: Exception) -> None:
        raise RuntimeError(f"trial {key} of the bench group failed") from error

    def epoch() -> int:
        e = next(epochs)
        steps = {}
        for i, (learner, step) in enumerate(members):
            generator = epoch_generator(i, e)
            indices = sampler.epoch_indices(e, recipe.epochs, generator)[:full]
            steps[str(i)] = epoch_steps(learner, batches, indices, recipe.batch_size, generator, step)
        run_group(steps, lambda key, loss: None, failed, streams=streams)
        return k * full

    return epoch


def peak_memory_per_trial(
    initial: torch.nn.Module, batches: TensorBatches, case: BenchCase, precision: Precision, k: int
) -> float:
    """GiB of GPU memory one trial of a K-group needs at its peak (models, optimiser state, activations;
    the device-resident dataset is shared and not counted), over one eager epoch."""
    gc.collect()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(batches.device)
    torch.cuda.reset_peak_memory_stats(batches.device)
    group_loop(initial, batches, case, precision, k, captured=False)()
    torch.cuda.synchronize(batches.device)
    return (torch.cuda.max_memory_allocated(batches.device) - base) / k / GIB


# how a group steps: (name, captured step, a CUDA stream per trial); on a CPU only the first
MODES = (("eager", False, False), ("captured", True, False), ("eager on streams", False, True))


def side(k: int, mode: str, precision: str) -> str:
    return f"K={k} {mode} {precision}"


def measure(
    case: BenchCase, device: torch.device, images: int | None, rounds: int, min_seconds: float, n: int
) -> Section:
    """Section (f) on `case` (the quick suite's model on a CPU, ResNet-32 on a GPU)."""
    cuda = device.type == "cuda"
    sizes = GROUP_SIZES["cuda" if cuda else "cpu"]
    precisions = ["fp32", "bf16"] if cuda and bf16_support(device)[0] else ["fp32"]
    modes = MODES if cuda else MODES[:1]
    split = case.head(images)
    recipe = case.recipe
    batches = TensorBatches(split, case.data, device, case.pad, case.flip, recipe.channels_last)
    torch.manual_seed(0)
    initial = build_model(case.model, case.data.num_classes, case.in_channels)

    runs: dict[str, Callable[[], int]] = {}
    per_image, memory = {}, {}
    for name in precisions:
        precision = resolve_precision(name, device)
        model = copy.deepcopy(initial).to(device, memory_format=memory_format(recipe))
        per_image[name] = image_flops(model, batches, recipe.batch_size, precision)
        if cuda:
            memory[name] = {k: peak_memory_per_trial(initial, batches, case, precision, k) for k in sizes}
        runs[f"bare {name}"] = bare_loop(initial, batches, case, device, name == "bf16")
        runs[f"matmul {name}"] = matmul(device, torch.bfloat16 if name == "bf16" else torch.float32, n)
        for mode, captured, streams in modes:
            for k in sizes:
                if streams and k == 1:
                    continue  # a group of one steps on the default stream
                runs[side(k, mode, name)] = group_loop(initial, batches, case, precision, k, captured, streams)
    samples = compare(runs, device, rounds, min_seconds)
    matmul_flop = 2.0 * n**3

    figures = []
    for name in precisions:
        one = side(1, "eager", name)
        for mode, captured, streams in modes:
            for k in sizes:
                this = side(k, mode, name)
                if this == one or this not in samples:
                    continue
                detail: dict[str, Any] = {
                    "model": case.model,
                    "device_type": device.type,
                    "group_size": k,
                    "step": "graph" if captured else "eager",
                    "streams": "per trial" if streams else "default",
                    "precision": name,
                    "batch_size": recipe.batch_size,
                    "images": len(split),
                    "side": this,
                    "baseline_side": one,
                    "samples": {this: samples[this], one: samples[one]},
                    "vs_bare_loop": _median_ratio(samples[this], samples[f"bare {name}"]),
                    "fraction_of_matmul_flops": _median_ratio(
                        [per_image[name] * x for x in samples[this]],
                        [matmul_flop * x for x in samples[f"matmul {name}"]],
                    ),
                }
                if cuda:
                    detail["peak_memory_per_trial_gib"] = memory[name][k]
                figures.append(
                    Figure.paired(
                        samples,
                        this,
                        one,
                        case=f"{case.name}, {case.model}, {this}",
                        unit="images/s",
                        value_name=f"{k} trials in one process, {mode} steps",
                        baseline_name=f"one trial, eager, {name}",
                        detail=detail,
                    )
                )
    section = Section(GROUPING_SECTION, TITLE, figures, notes={"verdict": verdict(figures, case.model, device)})
    if cuda:
        section.figures += suite_hours(figures, samples, precisions)
        section.notes["memory_per_trial_gib_eager"] = memory
    return section


def _median_ratio(a: list[float], b: list[float]) -> float:
    """The median over rounds of a / b within each round (as `Figure.paired`)."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def verdict(figures: list[Figure], model: str, device: torch.device) -> str:
    """Whether grouping pays here, in the words `--group-size auto` acts on."""
    # on the default stream: per-trial streams are opt-in ($LTBENCH_GROUP_STREAMS), so auto must not count on them
    eager = [f for f in figures if f.detail["step"] == "eager" and f.detail.get("streams") == "default"]
    if not eager:
        return "nothing measured"
    best = max(eager, key=lambda f: f.ratio)
    k = best.detail["group_size"]
    if best.ratio >= GROUPING_PAYS:
        return f"grouping pays for {model} on {device.type}: K={k} trains {best.ratio:.2f}x one trial per process"
    return (
        f"grouping does not pay for {model} on {device.type}: the best, K={k}, trains {best.ratio:.2f}x one trial "
        f"per process (auto needs >= {GROUPING_PAYS:.2f}x), so --group-size auto stays at 1"
    )


def suite_hours(figures: list[Figure], samples: dict[str, list[float]], precisions: list[str]) -> list[Figure]:
    """The cifar-lt suite's training hours on one GPU at the fastest eager and captured groups, against one
    trial per process (eager, the suite's precision). A bound: work / aggregate images/s."""
    trials = build_suite(SUITE).trials
    plan = make_plan(trials)
    work = sum(image_equivalents(t) for t in plan.trials)
    name = resolve_precision(trials[0].recipe.get("precision", "fp32"), torch.device("cuda")).name
    name = name if name in precisions else precisions[0]
    one = statistics.median(samples[side(1, "eager", name)])
    out = []
    for step, streams in (("eager", "default"), ("graph", "default"), ("eager", "per trial")):
        mine = [
            f
            for f in figures
            if f.detail["step"] == step and f.detail["streams"] == streams and f.detail["precision"] == name
        ]
        if not mine:
            continue
        best = max(mine, key=lambda f: f.value)
        hours, baseline = work / best.value / 3600, work / one / 3600
        out.append(
            Figure(
                case=f"{SUITE} on one GPU, {step}{' on streams' if streams != 'default' else ''}, "
                f"K={best.detail['group_size']}, {name}",
                value=hours,
                baseline=baseline,
                ratio=baseline / hours,
                unit="hours",
                value_name=f"{math.ceil(work):,} training-image equivalents / the group's images/s",
                baseline_name="the same at one trial per process",
                detail={
                    "step": step,
                    "streams": streams,
                    "group_size": best.detail["group_size"],
                    "precision": name,
                    "work": work,
                },
            )
        )
    return out
