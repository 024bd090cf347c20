"""Where an epoch's time went on a GPU: its peak memory and the GPU's utilisation, for the epoch's row.

On CUDA each epoch's row gains `gpu_memory_gib` (the peak of memory allocated by this process's tensors
during the epoch, from torch's caching allocator) and `gpu_utilization_pct` (NVML's share of time in which
a kernel ran on the GPU, read at the end of the epoch: NVML averages it over its last sample period, 1/6 s
to 1 s depending on the GPU, over every process on the GPU). Both describe the process and the GPU, so in
a group of trials (`harness.training.group`) or with trials packed on one GPU they are shared, not the
trial's alone; `ltbench bench` measures the memory of one trial. On a CPU the row has neither (the
training throughput, `train_images_per_s`, is in every row). The driver logs the rows to MLflow.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

GIB = 2**30


def epoch_started(device: torch.device) -> None:
    """Start the epoch's peak-memory window."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def epoch_stats(device: torch.device) -> dict[str, Any]:
    """The epoch's GPU figures ({} on a CPU; no utilisation where NVML cannot be read)."""
    if device.type != "cuda":
        return {}
    stats: dict[str, Any] = {"gpu_memory_gib": torch.cuda.max_memory_allocated(device) / GIB}
    # no NVML library or driver support (a MIG slice, some containers): the row goes without it
    with contextlib.suppress(Exception):
        stats["gpu_utilization_pct"] = float(torch.cuda.utilization(device))
    return stats
