"""(a) Data pipeline: ltbench's device-resident batches against the usual per-sample torchvision pipeline.

The baseline is what a CIFAR training script typically does: a Dataset that turns each uint8 image into a PIL
image and applies RandomCrop(padding) + RandomHorizontalFlip + ToTensor + Normalize, batched by a DataLoader
(persistent workers, pinned memory on a GPU) and copied to the device. ltbench's side is `TensorBatches`: the
same images as one uint8 tensor on the device, augmented a whole batch at a time. Both deliver normalised
float batches on the device, from the same images, with the same batch size and augmentation.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import torch

from harness.bench.cases import BenchCase
from harness.bench.common import Figure, compare
from harness.data.base import ArraySplit
from harness.data.pipeline import TensorBatches
from harness.data.samplers import make_sampler
from harness.training.loop import epoch_generator

TARGET = 5.0


def baseline_workers() -> int:
    """DataLoader workers of the baseline: ltbench's own rule for file datasets (a trial's CPUs minus one
    for the main process), on the CPU budget the device pipeline gets (its torch threads), capped at 4
    since the images are tiny. Both sides thus use the same number of cores."""
    return max(0, min(4, torch.get_num_threads() - 1))


class _PILImages(torch.utils.data.Dataset):
    """uint8 images (N, C, H, W) served one PIL image at a time, as torchvision's CIFAR10 dataset does."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable) -> None:
        # PIL wants HWC (or HW for one channel)
        hwc = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
        self.images = hwc[..., 0] if hwc.shape[3] == 1 else hwc
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def torchvision_loader(case: BenchCase, images: int | None, device: torch.device, workers: int):
    from torchvision import transforms as T

    split = case.head(images)
    h = case.image_shape[1]
    steps = [T.RandomCrop(h, padding=case.pad)] if case.pad else []
    steps += [T.RandomHorizontalFlip()] if case.flip else []
    transform = T.Compose([*steps, T.ToTensor(), T.Normalize(case.data.mean, case.data.std)])
    return torch.utils.data.DataLoader(
        _PILImages(split.images, split.labels, transform),
        batch_size=case.recipe.batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )


def device_epochs(case: BenchCase, split: ArraySplit, device: torch.device) -> Callable[[], int]:
    """One epoch of ltbench's training batches (instance sampler, crop+flip) per call; returns images."""
    batches = TensorBatches(split, case.data, device, case.pad, case.flip, case.recipe.channels_last)
    sampler = make_sampler("instance", split.labels, case.data.num_classes, case.recipe.batch_size)
    epochs = itertools.count(1)

    def epoch() -> int:
        e = next(epochs)
        generator = epoch_generator(0, e)
        indices = sampler.epoch_indices(e, 1, generator)
        seen = 0
        for _, targets in batches.train_batches(indices, case.recipe.batch_size, generator):
            seen += len(targets)
        return seen

    return epoch


def loader_epochs(loader: torch.utils.data.DataLoader, device: torch.device) -> Callable[[], int]:
    """One epoch of the DataLoader per call, each batch copied to the device; returns images."""

    def epoch() -> int:
        seen = 0
        for images, labels in loader:
            images = images.to(device, non_blocking=True)
            seen += len(labels.to(device, non_blocking=True))
        return seen

    return epoch


def measure(
    cases: list[BenchCase], device: torch.device, images: int | None, rounds: int, min_seconds: float
) -> list[Figure]:
    workers = baseline_workers()
    figures = []
    for case in cases:
        split = case.head(images)
        loader = torchvision_loader(case, images, device, workers)
        runs = {"device": device_epochs(case, split, device), "torchvision": loader_epochs(loader, device)}
        try:
            samples = compare(runs, device, rounds, min_seconds)
        finally:
            del runs, loader  # stops the persistent workers
        figures.append(
            Figure.paired(
                samples,
                "device",
                "torchvision",
                case=case.name,
                unit="images/s",
                value_name="ltbench TensorBatches (device-resident uint8, batch crop+flip)",
                baseline_name=f"torchvision per-sample PIL transforms, DataLoader num_workers={workers}",
                target=TARGET,
                detail={
                    "images": len(split),
                    "batch_size": case.recipe.batch_size,
                    "pad": case.pad,
                    "flip": case.flip,
                    "channels_last": case.recipe.channels_last,
                    "workers": workers,
                    "samples": samples,
                },
            )
        )
    return figures
