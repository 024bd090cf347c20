"""Batches for training and evaluation.

In-memory datasets (CIFAR, Fashion-MNIST) live as one uint8 tensor on the trial's device; the training
augmentation (pad + random crop, horizontal flip) is applied to a whole batch at once with tensor indexing,
so the training step runs no per-sample Python. File datasets (ImageNet-LT) go through DataLoader workers
with torchvision transforms, pinned memory and persistent workers.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from harness.data.base import ArraySplit, FileSplit, LTData, Split

Batch = tuple[torch.Tensor, torch.Tensor]


def random_crop_flip(
    images: torch.Tensor, pad: int, flip: bool, generator: torch.Generator
) -> torch.Tensor:
    """Pad-`pad` random crop and horizontal flip of a uint8 batch (B, C, H, W), each image its own draw.

    The random offsets are drawn on the CPU generator (a few ints per image) and moved to the images'
    device, so the stream is identical on every device.
    """
    b, c, h, w = images.shape
    device = images.device
    out = images
    if pad > 0:
        padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(device, non_blocking=True)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(device, non_blocking=True)
        rows = (dy[:, None] + torch.arange(h, device=device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=device))[:, None, None, :]
        batch = torch.arange(b, device=device)[:, None, None, None]
        chan = torch.arange(c, device=device)[None, :, None, None]
        out = padded[batch, chan, rows, cols]
    if flip:
        mask = (torch.rand(b, generator=generator) < 0.5).to(device, non_blocking=True)
        out = torch.where(mask[:, None, None, None], out.flip(3), out)
    return out


class TensorBatches:
    """A split held on `device` as uint8; yields normalised float batches."""

    def __init__(self, split: ArraySplit, data: LTData, device: torch.device, pad: int, flip: bool) -> None:
        self.images = torch.as_tensor(split.images).to(device)
        self.labels = torch.as_tensor(split.labels).to(device)
        shape = (1, len(data.mean), 1, 1)
        self.mean = torch.tensor(data.mean, device=device).view(shape) * 255.0
        self.inv_std = 1.0 / (torch.tensor(data.std, device=device).view(shape) * 255.0)
        self.device = device
        self.pad, self.flip = pad, flip

    def __len__(self) -> int:
        return len(self.labels)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() - self.mean) * self.inv_std

    def train_batches(
        self, indices: torch.Tensor, batch_size: int, generator: torch.Generator
    ) -> Iterator[Batch]:
        indices = indices.to(self.device)
        for start in range(0, len(indices), batch_size):
            idx = indices[start : start + batch_size]
            images = random_crop_flip(self.images[idx], self.pad, self.flip, generator)
            yield self.normalise(images), self.labels[idx]

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        for start in range(0, len(self.labels), batch_size):
            yield (
                self.normalise(self.images[start : start + batch_size]),
                self.labels[start : start + batch_size],
            )


class _SwappableBatches:
    """A batch sampler whose batches the trainer replaces every epoch."""

    batches: list[list[int]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _ImageFiles(torch.utils.data.Dataset):
    def __init__(self, split: FileSplit, transform) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        from PIL import Image

        with Image.open(self.split.root / self.split.paths[i]) as img:
            image = self.transform(img.convert("RGB"))
        return image, int(self.split.labels[i])


class FileBatches:
    """A file split decoded by DataLoader workers (Kang et al.'s ImageNet-LT transforms)."""

    def __init__(self, split: FileSplit, data: LTData, device: torch.device, train: bool, workers: int) -> None:
        from torchvision import transforms as T

        normalise = T.Normalize(data.mean, data.std)
        if train:
            tf = T.Compose([
                T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ColorJitter(0.4, 0.4, 0.4, 0),
                T.ToTensor(), normalise,
            ])
        else:
            tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), normalise])
        self.dataset = _ImageFiles(split, tf)
        self.labels = torch.as_tensor(split.labels)
        self.device, self.workers = device, workers
        self.loader_kwargs = dict(
            num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0
        )

    def __len__(self) -> int:
        return len(self.dataset)

    def _iterate(self, loader) -> Iterator[Batch]:
        for images, labels in loader:
            yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)

    def train_batches(
        self, indices: torch.Tensor, batch_size: int, generator: torch.Generator
    ) -> Iterator[Batch]:
        # One DataLoader for the whole trial keeps its workers alive across epochs; each epoch only swaps
        # the index batches it walks through.
        if not hasattr(self, "_train_loader"):
            self._epoch_batches = _SwappableBatches()
            self._train_loader = torch.utils.data.DataLoader(
                self.dataset, batch_sampler=self._epoch_batches, **self.loader_kwargs
            )
        self._epoch_batches.batches = [b.tolist() for b in indices.split(batch_size)]
        yield from self._iterate(self._train_loader)

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        if not hasattr(self, "_eval_loader"):
            self._eval_loader = torch.utils.data.DataLoader(
                self.dataset, batch_size=batch_size, shuffle=False, **self.loader_kwargs
            )
        yield from self._iterate(self._eval_loader)


def make_batches(
    split: Split, data: LTData, device: torch.device, train: bool, pad: int, flip: bool, workers: int = 0
) -> TensorBatches | FileBatches:
    if isinstance(split, ArraySplit):
        return TensorBatches(split, data, device, pad if train else 0, flip and train)
    return FileBatches(split, data, device, train, workers)


def labels_of(split: Split) -> np.ndarray:
    return np.asarray(split.labels)
