"""`ltbench bench`'s sections (a)-(f) run in order, their result written to `bench.json` and printed as a table
(the sections are listed in this package's docstring)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from harness.bench import cases as bench_cases
from harness.bench import grouping, makespan, pipeline, sharing, training
from harness.bench.common import Section, machine_info
from harness.core.errors import LtbenchError
from harness.records.provenance import resolve_device


@dataclass(frozen=True)
class Sizes:
    """How much work each section does; `quick` is about a minute on two CPU cores."""

    pipeline_images: int | None  # images per pipeline case (None: the whole split)
    synthetic_images: int  # size of the synthetic CIFAR-shaped set when real files are missing
    train_images: dict[str, int | None]  # per model: images per timed training epoch
    rounds: int  # timed rounds; each times every side once, the ratio is the median over rounds
    min_seconds: float  # each side's time in a round lasts at least this long
    matmul_n: int  # side of the reference matmul


SIZES: dict[str, Sizes] = {
    "quick": Sizes(
        pipeline_images=2048,
        synthetic_images=4096,
        train_images={"resnet-small-gray": 1024, "resnet32": 384},
        rounds=3,
        min_seconds=0.3,
        matmul_n=1024,
    ),
    "full": Sizes(
        pipeline_images=None,
        synthetic_images=10_000,
        train_images={"resnet-small-gray": None, "resnet32": 1280},
        rounds=6,
        min_seconds=0.5,
        matmul_n=2048,
    ),
}
SECTION_TITLES = {
    "pipeline": "(a) data pipeline: device-resident vs torchvision per-sample",
    "trainer": "(b) trainer: train_epoch vs bare PyTorch loop",
    "bf16": "(b) bf16 vs fp32: bare loop",
    "flops": "(d) achieved training FLOP/s vs dense matmul FLOP/s",
}


@dataclass(frozen=True)
class MakespanOptions:
    """Section (e): the Ray run's fake GPUs (None: the event simulation only), trials per GPU (None: the
    suite's), time scale, how many of the plan's trials, and a bench.json whose GPU throughputs to cost with."""

    ray_gpus: int | None = None
    packing: int | None = None
    time_scale: float = 0.01
    max_trials: int | None = None
    bench_json: Path | None = None

    def measure(self, log: Callable[[str], None]) -> Section:
        for name, value in (
            ("--ray-gpus", self.ray_gpus),
            ("--packing", self.packing),
            ("--max-trials", self.max_trials),
        ):
            if value is not None and value < 1:
                raise LtbenchError(f"{name} must be a positive integer, got {value}")
        if self.time_scale <= 0:
            raise LtbenchError(f"--time-scale must be positive, got {self.time_scale:g}")
        return makespan.measure(
            ray_gpus=self.ray_gpus,
            packing=self.packing,
            time_scale=self.time_scale,
            max_trials=self.max_trials,
            bench_json=self.bench_json,
            log=log,
        )


def run_makespan_only(options: MakespanOptions, path: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Section (e) alone, put into the bench.json document at `path` (its other sections kept)."""
    started = time.perf_counter()
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        result = {"machine": machine_info(torch.device("cpu")), "settings": {}, "sections": {}}
    log("(e) makespan")
    result["sections"]["makespan"] = options.measure(log).as_dict()
    result["seconds"] = time.perf_counter() - started
    return result


def _device(choice: str) -> torch.device:
    try:
        device = resolve_device(choice)
    except RuntimeError as e:  # torch.device("gpu") and the like
        raise LtbenchError(f"unknown device {choice!r}; use auto, cpu, cuda or cuda:N") from e
    if device.type not in ("cpu", "cuda"):
        raise LtbenchError(f"device {choice!r} is not supported by the bench; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LtbenchError(f"device {choice!r} was asked for but no GPU is visible; use cpu or auto")
    return device


def _prepare(device: str, quick: bool, threads: int | None) -> tuple[torch.device, Sizes]:
    """The device and sizes of a bench run, and torch's threads set (checked first: bad input is one line)."""
    dev = _device(device)
    if threads is not None:
        if threads < 1:
            raise LtbenchError(f"--threads must be a positive integer, got {threads}")
        torch.set_num_threads(threads)
    return dev, SIZES["quick" if quick else "full"]


def _cases(data_root: str | None, sizes: Sizes) -> list[bench_cases.BenchCase]:
    """The quick suite's case and the CIFAR-shaped case, real files where found."""
    return [
        bench_cases.fashion_case(data_root, sizes.synthetic_images),
        bench_cases.cifar_case(data_root, sizes.synthetic_images),
    ]


def measure_grouping(
    cases: list[bench_cases.BenchCase], device: torch.device, sizes: Sizes, compiled: bool = False
) -> Section:
    """Section (f) on the quick suite's case on a CPU (does grouping pay there?), on ResNet-32 on a GPU; with
    `compiled`, its torch.compile section instead."""
    case = cases[1] if device.type == "cuda" else cases[0]
    images = sizes.train_images.get(case.model)
    if device.type == "cpu" and images is not None:  # K trials train K times the images per timed call
        images = max(case.recipe.batch_size, images // max(grouping.GROUP_SIZES["cpu"]))  # >= one full batch
    return grouping.measure(case, device, images, sizes.rounds, sizes.min_seconds, sizes.matmul_n, compiled)


def run_grouping_only(
    device: str,
    quick: bool,
    data_root: str | None,
    threads: int | None,
    path: Path,
    log: Callable[[str], None] = print,
    compiled: bool = False,
) -> dict[str, Any]:
    """Section (f) alone (or, with `compiled`, its torch.compile section), put into the bench.json document at
    `path` (its other sections, machine and settings kept: the section names its own machine)."""
    dev, sizes = _prepare(device, quick, threads)
    started = time.perf_counter()
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        result = {"sections": {}}
    result.setdefault("machine", machine_info(dev))
    result.setdefault("settings", {"device": str(dev), "quick": quick})
    log(f"(f) grouping{' compiled' if compiled else ''} on {dev}: loading data")
    section = measure_grouping(_cases(data_root, sizes), dev, sizes, compiled)
    m = machine_info(dev)
    section.notes["machine"] = f"{m['cpu_model']}, torch {m['torch']}, device {m['device']}"
    result["sections"][section.name] = section.as_dict()
    result["seconds"] = time.perf_counter() - started
    return result


def run_bench(
    device: str = "auto",
    quick: bool = False,
    data_root: str | None = None,
    threads: int | None = None,
    log: Callable[[str], None] = print,
    makespan_options: MakespanOptions | None = None,
) -> dict[str, Any]:
    """Measure every section and return the bench.json document.

    `threads` sets torch's intra-op threads (default: torch's, one per usable CPU). On a machine shared
    with other jobs, fewer threads than cores avoids OpenMP threads waiting on each other at every op,
    which otherwise slows small ops by orders of magnitude and drowns what is being measured.
    """
    dev, sizes = _prepare(device, quick, threads)
    started = time.perf_counter()
    log(f"bench on {dev} ({'quick' if quick else 'full'}): loading data")
    cases = _cases(data_root, sizes)
    sections: dict[str, Section] = {}

    log("(a) data pipeline")
    sections["pipeline"] = Section(
        "pipeline",
        SECTION_TITLES["pipeline"],
        pipeline.measure(cases, dev, sizes.pipeline_images, sizes.rounds, sizes.min_seconds),
    )

    log("(b, d) trainer, bf16, FLOP/s")
    trained = training.measure(cases, dev, sizes.train_images, sizes.rounds, sizes.min_seconds, sizes.matmul_n)
    sections["trainer"] = Section("trainer", SECTION_TITLES["trainer"], trained["trainer"])
    bf16 = Section("bf16", SECTION_TITLES["bf16"], trained["bf16"], notes={"support": trained["bf16_note"]})
    if not trained["bf16"]:
        bf16.status = trained["bf16_note"]
    sections["bf16"] = bf16

    log("(c) stage sharing")
    sections["stage_sharing"] = sharing.measure()

    sections["flops"] = Section("flops", SECTION_TITLES["flops"], trained["flops"])

    log("(e) makespan")
    sections["makespan"] = (makespan_options or MakespanOptions()).measure(log)

    log("(f) grouping")
    sections["grouping"] = measure_grouping(cases, dev, sizes)
    return {
        "machine": machine_info(dev),
        "settings": {"device": str(dev), "quick": quick, "threads": torch.get_num_threads(), "sizes": asdict(sizes)},
        "seconds": time.perf_counter() - started,
        "sections": {name: section.as_dict() for name, section in sections.items()},
    }


def write_bench(result: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def _quantity(value: float, unit: str) -> str:
    if unit == "FLOP/s":
        return f"{value / 1e9:,.1f} GFLOP/s"
    if unit == "hours":
        return f"{value:,.3f} h"
    if unit == "epochs":
        return f"{value:,.0f} epochs"
    return f"{value:,.0f} {unit}"


def format_table(result: dict[str, Any]) -> str:
    """The figures as a fixed-width table, one block per section, with PASS/BELOW against each target."""
    m = result["machine"]
    lines = [
        f"machine: {m['cpu_model']}, {m['usable_cpus']} CPUs, {m['torch_threads']} torch threads, "
        f"torch {m['torch']}, device {m['device']}",
    ]
    header = f"  {'case':<56} {'measured':>20} {'baseline':>20} {'ratio':>8} {'target':>8}  verdict"
    for section in result["sections"].values():
        lines += ["", section["title"]]
        if section["status"] != "ok":
            lines.append(f"  {section['status']}")
            continue
        lines.append(header)
        for f in section["figures"]:
            target = "-" if f["target"] is None else f">={f['target']:g}x"
            lines.append(
                f"  {f['case']:<56} {_quantity(f['value'], f['unit']):>20} "
                f"{_quantity(f['baseline'], f['unit']):>20} {f['ratio']:>7.2f}x {target:>8}  {f['verdict']}"
            )
        for key, note in section["notes"].items():
            lines.append(f"  {key}: {note}")
    lines.append(
        "\nmeasured, baseline: medians over rounds; ratio: median of the ratios within a round (both sides\n"
        "timed back to back), so it need not equal measured / baseline"
    )
    lines.append(f"{result['seconds']:.0f} s")
    return "\n".join(lines)
