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

Beside the group that steps its trials in turn, it measures the same K trials fused into one network
(`harness.models.fused`, issue 19 item 3: grouped convolutions, per-member BatchNorm), eager and (on a GPU)
captured: one step for all K, each trial's batch still gathered and augmented from its own sampler and
generator. The trainer does not fuse; these figures decide whether it should (docs/gpu-checks.md).

`ltbench bench --grouping --compile` measures the other way to a graph that the issue names, in a section of
its own (`grouping_compiled`): each trial's model under `torch.compile(mode="reduce-overhead")` (Inductor's
kernels, replayed as CUDA graphs; the optimiser's step stays eager), at K = 1 and 4 in the recipe's
precision, against the same eager K = 1; each figure carries its compile time (the first epoch's seconds
beyond a timed epoch's), which the throughput leaves out. That is the compile a worker pays on a machine
whose Inductor cache (under /tmp) is cold, as on a fresh cluster node; a second run on the machine reads
the cache and compiles in a fraction of it (seen on this 2-core CPU: 21.6 s cold, 1.5 s warm for the quick
model).
"""

from __future__ import annotations

import copy
import gc
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from harness.bench.cases import BenchCase
from harness.bench.common import Figure, Section, compare, synchronize
from harness.bench.training import bare_loop, bf16_support, image_flops, matmul
from harness.data.pipeline import TensorBatches
from harness.data.samplers import make_sampler
from harness.execution.costs import image_equivalents
from harness.execution.grouping import GROUPING_PAYS, GROUPING_SECTION, runs_today
from harness.experiment.plan import make_plan
from harness.experiment.suite import build_suite
from harness.models import build_model
from harness.models.fused import fuse, stacked_cross_entropy
from harness.training.captured import CapturedStep
from harness.training.group import run_group
from harness.training.loop import Learner, LossFn, StepFn, epoch_generator, epoch_steps, training_step
from harness.training.optim import make_optimizer, make_scheduler
from harness.training.precision import Precision, memory_format, resolve_precision

TITLE = "(f) grouping: K trials per process (eager / captured / fused) vs one trial per process"
COMPILED_SECTION = "grouping_compiled"
COMPILED_TITLE = "(f) grouping, torch.compile(mode='reduce-overhead') vs eager"
COMPILED_SIZES = (1, 4)
GROUP_SIZES = {"cpu": (1, 2, 4), "cuda": (1, 2, 4, 8, 16)}
SUITE = "cifar-lt"
GIB = 2**30


@dataclass(frozen=True)
class Mode:
    """How a group of K trials steps: in turn (each its own model) or fused into one network; eager or
    captured; on the default stream or a CUDA stream per trial."""

    name: str
    captured: bool = False
    streams: bool = False
    fused: bool = False
    compiled: bool = False

    def detail(self) -> dict[str, str]:
        return {
            "step": "compiled" if self.compiled else "graph" if self.captured else "eager",
            "streams": "per trial" if self.streams else "default",
            "fusion": "fused" if self.fused else "none",
        }


MODES = (
    Mode("eager"),
    Mode("captured", captured=True),
    Mode("eager on streams", streams=True),
    Mode("fused", fused=True),
    Mode("fused captured", captured=True, fused=True),
)
CPU_MODES = ("eager", "fused")  # no graphs or streams without CUDA
COMPILED = Mode("compiled", compiled=True)


def full_batches(images: int, batch_size: int) -> int:
    """The images of a timed epoch: its full batches only (one shape, as a graph needs)."""
    return (images // batch_size) * batch_size


@dataclass
class GroupSetup:
    """What every side of section (f) trains: K copies of `initial` on `batches`, in the case's recipe and
    `precision`, over the full batches only (one shape, as a graph needs), each trial i drawing its epoch's
    order and augmentation from a generator of its own."""

    initial: torch.nn.Module
    batches: TensorBatches
    case: BenchCase
    precision: Precision
    k: int

    def __post_init__(self) -> None:
        recipe, labels = self.case.recipe, self.batches.labels.cpu().numpy()
        self.full = full_batches(len(labels), recipe.batch_size)
        self.sampler = make_sampler("instance", labels, self.case.data.num_classes, recipe.batch_size)

    def model(self) -> torch.nn.Module:
        return copy.deepcopy(self.initial).to(self.batches.device, memory_format=memory_format(self.case.recipe))

    def fused_model(self) -> torch.nn.Module:
        """K copies of `initial` fused into one network, in the recipe's memory layout."""
        return fuse([self.model() for _ in range(self.k)]).to(memory_format=memory_format(self.case.recipe))

    def learner(self, model: torch.nn.Module, loss: LossFn, forward: torch.nn.Module | None = None) -> Learner:
        """`model`'s recipe SGD and schedule; `forward` (default `model`) is what the step calls."""
        recipe = self.case.recipe
        optimizer = make_optimizer(model.parameters(), recipe)
        scheduler = make_scheduler(optimizer, recipe, self.full // recipe.batch_size)
        return Learner(model if forward is None else forward, loss, optimizer, scheduler, self.precision)

    def trial_epoch(self, trial: int, epoch: int) -> tuple[torch.Tensor, torch.Generator]:
        generator = epoch_generator(trial, epoch)
        return self.sampler.epoch_indices(epoch, self.case.recipe.epochs, generator)[: self.full], generator


class CompiledSteps(torch.nn.Module):
    """`model` under `torch.compile(mode="reduce-overhead")`, each forward a new step of its CUDA graphs
    (`cudagraph_mark_step_begin`), so that a replay never overwrites outputs a trial still holds."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.compiled = torch.compile(model, mode="reduce-overhead")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        torch.compiler.cudagraph_mark_step_begin()
        return self.compiled(images)


def group_loop(setup: GroupSetup, mode: Mode) -> Callable[[], int]:
    """One epoch of K trials per call, their steps interleaved by `run_group` (each trial on a CUDA stream of
    its own with `mode.streams`, its model under torch.compile with `mode.compiled`); returns images."""
    members = []
    for _ in range(setup.k):
        model = setup.model()
        forward = CompiledSteps(model) if mode.compiled else model  # shares model's parameters
        step = CapturedStep() if mode.captured else training_step
        members.append((setup.learner(model, F.cross_entropy, forward), step))
    epochs = iter(range(1, 1 << 30))
    batch_size = setup.case.recipe.batch_size

    def failed(key: str, error: Exception) -> None:
        raise RuntimeError(f"trial {key} of the bench group failed") from error

    def epoch() -> int:
        e = next(epochs)
        steps = {}
        for i, (learner, step) in enumerate(members):
            indices, generator = setup.trial_epoch(i, e)
            steps[str(i)] = epoch_steps(learner, setup.batches, indices, batch_size, generator, step)
        run_group(steps, lambda key, loss: None, failed, streams=mode.streams)
        return setup.k * setup.full

    return epoch


def fused_loop(setup: GroupSetup, mode: Mode) -> Callable[[], int]:
    """One epoch of K trials fused into one network per call: each step stacks the K trials' batches (each
    from its own sampler order and augmentation generator, as in `group_loop`) and takes one step of the
    fused network on the sum of their losses (captured with `mode.captured`); returns images trained."""
    fused = setup.fused_model()
    learner = setup.learner(fused, stacked_cross_entropy)
    step: StepFn = CapturedStep() if mode.captured else training_step
    epochs = iter(range(1, 1 << 30))
    batch_size = setup.case.recipe.batch_size

    def epoch() -> int:
        e = next(epochs)
        per_trial = []
        for i in range(setup.k):
            indices, generator = setup.trial_epoch(i, e)
            per_trial.append(setup.batches.train_batches(indices, batch_size, generator))
        fused.train()
        for parts in zip(*per_trial, strict=True):
            step(learner, torch.stack([images for images, _ in parts]), torch.stack([t for _, t in parts]))
        return setup.k * setup.full

    return epoch


def peak_memory_per_trial(setup: GroupSetup) -> float:
    """GiB of GPU memory one trial of a K-group needs at its peak (models, optimiser state, activations;
    the device-resident dataset is shared and not counted), over one eager epoch."""
    device = setup.batches.device
    gc.collect()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    group_loop(setup, MODES[0])()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / setup.k / GIB


def side(k: int, mode: str, precision: str) -> str:
    return f"K={k} {mode} {precision}"


def first_call_timed(run: Callable[[], int], device: torch.device, seconds: dict[str, float], name: str):
    """`run`, with its first call's wall seconds (where a compiled side compiles) put in `seconds[name]`."""

    def call() -> int:
        if name in seconds:
            return run()
        synchronize(device)
        started = time.perf_counter()
        done = run()
        synchronize(device)
        seconds[name] = time.perf_counter() - started
        return done

    return call


def measure(
    case: BenchCase,
    device: torch.device,
    images: int | None,
    rounds: int,
    min_seconds: float,
    n: int,
    compiled: bool = False,
) -> Section:
    """Section (f) on `case` (the quick suite's model on a CPU, ResNet-32 on a GPU); with `compiled`, the
    torch.compile section instead (eager and compiled at COMPILED_SIZES, the recipe's precision)."""
    cuda = device.type == "cuda"
    sizes = GROUP_SIZES["cuda" if cuda else "cpu"]
    precisions = ["fp32", "bf16"] if cuda and bf16_support(device)[0] else ["fp32"]
    modes = [m for m in MODES if cuda or m.name in CPU_MODES]
    if compiled:
        sizes = tuple(k for k in sizes if k in COMPILED_SIZES)
        precisions = [resolve_precision(case.recipe.precision, device).name]
        modes = [MODES[0], COMPILED]
    first_seconds: dict[str, float] = {}
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
        if cuda and not compiled:
            memory[name] = {k: peak_memory_per_trial(GroupSetup(initial, batches, case, precision, k)) for k in sizes}
        runs[f"bare {name}"] = bare_loop(initial, batches, case, device, name == "bf16")
        runs[f"matmul {name}"] = matmul(device, torch.bfloat16 if name == "bf16" else torch.float32, n)
        for mode in modes:
            for k in sizes:
                if k == 1 and (mode.streams or mode.fused):
                    continue  # a group of one steps on the default stream, unfused
                this = side(k, mode.name, name)
                setup = GroupSetup(initial, batches, case, precision, k)
                loop = fused_loop(setup, mode) if mode.fused else group_loop(setup, mode)
                runs[this] = first_call_timed(loop, device, first_seconds, this) if mode.compiled else loop
    samples = compare(runs, device, rounds, min_seconds)
    matmul_flop = 2.0 * n**3
    full = full_batches(len(split), recipe.batch_size)  # images a trial trains per timed epoch

    figures = []
    for name in precisions:
        one = side(1, "eager", name)
        for mode in modes:
            for k in sizes:
                this = side(k, mode.name, name)
                if this == one or this not in samples:
                    continue
                detail: dict[str, Any] = {
                    "model": case.model,
                    "device_type": device.type,
                    "group_size": k,
                    **mode.detail(),
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
                if name in memory:
                    detail["peak_memory_per_trial_gib"] = memory[name][k]
                if mode.compiled:  # the first epoch's seconds beyond what a timed epoch of it takes
                    epoch_s = k * full / statistics.median(samples[this])
                    detail["first_epoch_seconds"] = first_seconds[this]
                    detail["compile_seconds"] = max(first_seconds[this] - epoch_s, 0.0)
                figures.append(
                    Figure.paired(
                        samples,
                        this,
                        one,
                        case=f"{case.name}, {case.model}, {this}",
                        unit="images/s",
                        value_name=f"{k} trials in one process, {mode.name} steps",
                        baseline_name=f"one trial, eager, {name}",
                        detail=detail,
                    )
                )
    if compiled:
        section = Section(COMPILED_SECTION, COMPILED_TITLE, figures)
    else:
        section = Section(GROUPING_SECTION, TITLE, figures, notes={"verdict": verdict(figures, case.model, device)})
    if cuda:
        section.figures += suite_hours(figures, samples, precisions)
    if memory:
        section.notes["memory_per_trial_gib_eager"] = memory
    return section


def _median_ratio(a: list[float], b: list[float]) -> float:
    """The median over rounds of a / b within each round (as `Figure.paired`)."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def verdict(figures: list[Figure], model: str, device: torch.device) -> str:
    """Whether grouping pays here, in the words `--group-size auto` acts on."""
    # what a grouped run steps today: per-trial streams are opt-in ($LTBENCH_GROUP_STREAMS) and the trainer does not
    # fuse, so auto must count on neither
    eager = [f for f in figures if runs_today(f.detail)]
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
    """The cifar-lt suite's training hours on one GPU at each mode's fastest group (in turn, captured, on
    streams, fused, fused captured, compiled), against one trial per process (eager, the suite's precision).
    A bound: work / aggregate images/s."""
    trials = build_suite(SUITE).trials
    plan = make_plan(trials)
    work = sum(image_equivalents(t) for t in plan.trials)
    name = resolve_precision(trials[0].recipe.get("precision", "fp32"), torch.device("cuda")).name
    name = name if name in precisions else precisions[0]
    one = statistics.median(samples[side(1, "eager", name)])
    out = []
    for mode in (*MODES, COMPILED):
        mine = [
            f
            for f in figures
            if all(f.detail[key] == value for key, value in mode.detail().items()) and f.detail["precision"] == name
        ]
        if not mine:
            continue
        best = max(mine, key=lambda f: f.value)
        hours, baseline = work / best.value / 3600, work / one / 3600
        out.append(
            Figure(
                case=f"{SUITE} on one GPU, {mode.name}, K={best.detail['group_size']}, {name}",
                value=hours,
                baseline=baseline,
                ratio=baseline / hours,
                unit="hours",
                value_name=f"{math.ceil(work):,} training-image equivalents / the group's images/s",
                baseline_name="the same at one trial per process",
                detail={
                    **mode.detail(),
                    "group_size": best.detail["group_size"],
                    "precision": name,
                    "work": work,
                },
            )
        )
    return out
