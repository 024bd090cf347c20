"""What every bench section shares: the figure record, timing, and the machine description.

Every figure is a ratio against a baseline measured in the same process, because absolute images/s on a
shared or throttled machine mean little, while two sides timed back to back see the same machine. Each
round times every side once (in alternating order); the ratio is the median over rounds of the ratio within
a round. Load from other processes comes and goes in bursts: pairing keeps a burst from landing on one side
only, and the median discards the rounds a burst split. Values and baselines are the per-side medians.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.records.provenance import device_name


@dataclass
class Figure:
    """One measured figure and its same-process baseline.

    `ratio` is how many times better the measured side is (for throughputs value / baseline; for costs
    such as epochs, baseline / value); `target` is the ratio it should reach, None where none is set.
    """

    case: str
    value: float
    baseline: float
    ratio: float
    unit: str
    value_name: str
    baseline_name: str
    target: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def paired(cls, samples: dict[str, list[float]], side: str, reference: str, **fields: Any) -> Figure:
        """`side` against `reference`, both timed in the same rounds: the medians of each, and the median
        over rounds of the per-round ratio side / reference (load hits both sides of a round alike)."""
        ratios = [a / b for a, b in zip(samples[side], samples[reference], strict=True)]
        return cls(
            value=statistics.median(samples[side]),
            baseline=statistics.median(samples[reference]),
            ratio=statistics.median(ratios),
            **fields,
        )

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "-"
        return "PASS" if self.ratio >= self.target else "BELOW"

    def as_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "value": self.value,
            "value_name": self.value_name,
            "baseline": self.baseline,
            "baseline_name": self.baseline_name,
            "unit": self.unit,
            "ratio": self.ratio,
            "target": self.target,
            "verdict": self.verdict,
            "detail": self.detail,
        }


@dataclass
class Section:
    """A bench section: its figures, or a status saying why it has none (e.g. 'unavailable: ...')."""

    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    status: str = "ok"
    notes: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "status": self.status,
            "figures": [f.as_dict() for f in self.figures],
            "notes": self.notes,
        }


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so a timer brackets what was computed and not only what was queued."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(run: Callable[[], int], device: torch.device, min_seconds: float) -> float:
    """Items per second of repeated `run()` calls (each returns how many items it processed), repeated until
    at least `min_seconds` have passed so that short runs are not dominated by timer and launch noise."""
    synchronize(device)
    started = time.perf_counter()
    done = 0
    while True:
        done += run()
        synchronize(device)
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return done / elapsed


def compare(
    runs: dict[str, Callable[[], int]], device: torch.device, rounds: int, min_seconds: float
) -> dict[str, list[float]]:
    """Throughput samples of each side: one untimed warm-up call each (lazy init, allocator, kernel choice),
    then `rounds` rounds in alternating order so that drift in machine load hits every side alike."""
    for run in runs.values():
        run()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            samples[name].append(throughput(runs[name], device, min_seconds))
    return samples


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what `platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def machine_info(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on; ratios are only comparable across runs on the same machine."""
    flags = cpu_flags()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "torch_threads": torch.get_num_threads(),
        "cpu_native_bf16": bool(flags & {"avx512_bf16", "amx_bf16"}),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "device": device_name(device),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
