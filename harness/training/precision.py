"""Numeric precision and memory layout of a trial's forward passes.

A recipe names a precision (`fp32`, `bf16` or `auto`); the trainer resolves it once against the trial's
device. bf16 runs forward passes under `torch.autocast` (weights, gradients and the SGD update stay float32,
so no loss scaling is needed, unlike fp16). `auto` takes bf16 only where the device runs it natively (CUDA
with bf16 support), so a CPU or an older GPU quietly keeps fp32 instead of running an emulated, slower bf16.
The fp32 path enters no autocast context at all, which keeps its results bit-identical to a trainer that
knows nothing of precision.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from harness.core.errors import LtbenchError, unknown_choice
from harness.training.recipes import PRECISIONS, Recipe


def cuda_bf16_supported(device: torch.device) -> bool:
    """True when `device` is a CUDA device with native bf16 (Ampere or newer)."""
    return device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


@dataclass(frozen=True)
class Precision:
    """A resolved precision: `name` is 'fp32' or 'bf16', `device_type` the autocast device type."""

    name: str
    device_type: str

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.name == "bf16" else torch.float32

    def autocast(self) -> contextlib.AbstractContextManager:
        """A fresh context for one forward pass; a no-op for fp32."""
        if self.name == "bf16":
            return torch.autocast(self.device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


FP32 = Precision("fp32", "cpu")


def resolve_precision(choice: str, device: torch.device) -> Precision:
    """Turn a recipe's precision into the one this device runs; explicit bf16 on a GPU without it is an error."""
    if choice not in PRECISIONS:
        raise unknown_choice("precision", choice, PRECISIONS)
    if choice == "auto":
        choice = "bf16" if cuda_bf16_supported(device) else "fp32"
    if choice == "bf16" and device.type == "cuda" and not cuda_bf16_supported(device):
        name = torch.cuda.get_device_name(device)
        raise LtbenchError(f"precision 'bf16' was asked for but {name} has no bf16 support; use fp32 or auto")
    return Precision(choice, device.type)


def memory_format(recipe: Recipe) -> torch.memory_format:
    """The layout for the model's weights and the batches: NHWC when the recipe asks for channels_last.

    `preserve_format` (not `contiguous_format`) for the default, so a model moved with it is untouched.
    """
    return torch.channels_last if recipe.channels_last else torch.preserve_format
