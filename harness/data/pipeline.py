"""Batches for training and evaluation.

In-memory datasets (CIFAR, Fashion-MNIST) live as one uint8 tensor on the trial's device; the training
augmentation (pad + random crop, horizontal flip) is applied to a whole batch at once with one gather, so
the training step runs no per-sample Python. An epoch's indices and augmentation draws reach the device in
one copy before its first batch, so no step waits on a host-to-device transfer. File datasets (ImageNet-LT)
go through DataLoader workers with torchvision transforms, pinned memory and persistent workers, and
reach the device as uint8 too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from harness.data.augment import apply_policy
from harness.data.base import ArraySplit, FileSplit, LTData, Split

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class ViewedImages:
    """A training batch's images with the extra views a method asked for (`Method.views`), and the batch its
    second sampler drew beside it (`Method.paired_sampler`): what `viewed_batches` yields in place of images."""

    images: torch.Tensor  # the standard view (the dataset's crop and flip), normalised
    views: tuple[torch.Tensor, ...]  # one normalised view per policy, of the same images
    paired: tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]] | None = None  # images, targets, views


def draw_crop_flip(batch: int, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """The random part of `random_crop_flip` for one batch: a (3, batch) int64 CPU tensor of row offsets,
    column offsets and flip flags (1 = mirror).

    Drawn on the CPU generator in a fixed order (rows, columns, flips), so the stream is identical on every
    device, and a whole epoch's draws can be made up front and moved to the device in one copy.
    """
    dy = dx = mirror = torch.zeros(batch, dtype=torch.int64)
    if pad > 0:
        dy = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
    if flip:
        mirror = (torch.rand(batch, generator=generator) < 0.5).long()
    return torch.stack([dy, dx, mirror])


def apply_crop_flip(images: torch.Tensor, draws: torch.Tensor, pad: int) -> torch.Tensor:
    """Crop (after zero padding by `pad`) and mirror a uint8 batch (B, C, H, W) as `draws` say.

    One `gather` over flattened pixels does both: the mirror is folded into the column index (column x of a
    mirrored crop is column w-1-x of the plain one), which is several times faster than indexing with four
    broadcast index tensors and then flipping.
    """
    b, c, h, w = images.shape
    device = images.device
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad)) if pad > 0 else images
    width = padded.shape[3]
    ar_h, ar_w = torch.arange(h, device=device), torch.arange(w, device=device)
    rows = draws[0][:, None] + ar_h
    cols = draws[1][:, None] + torch.where(draws[2][:, None].bool(), w - 1 - ar_w, ar_w)
    flat = (rows[:, :, None] * width + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return torch.gather(padded.reshape(b, c, -1), 2, flat).view(b, c, h, w)


def random_crop_flip(images: torch.Tensor, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Pad-`pad` random crop and horizontal flip of a uint8 batch (B, C, H, W), each image its own draw."""
    if pad == 0 and not flip:
        return images
    draws = draw_crop_flip(len(images), pad, flip, generator).to(images.device)
    return apply_crop_flip(images, draws, pad)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host-to-device copy that does not block the host: from pinned memory when the target is a GPU."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


class Normaliser:
    """uint8 images (B, C, H, W) on the device -> normalised float32, NHWC in memory when `channels_last`.

    Images travel as uint8 (4x fewer bytes than float32) and become floats only on the trial's device.
    """

    def __init__(self, data: LTData, device: torch.device, channels_last: bool) -> None:
        shape = (1, len(data.mean), 1, 1)
        self.mean = torch.tensor(data.mean, device=device).view(shape) * 255.0
        self.inv_std = 1.0 / (torch.tensor(data.std, device=device).view(shape) * 255.0)
        self.channels_last = channels_last

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:  # re-lay the uint8 batch (4x less to move than float), the float follows
            images = images.contiguous(memory_format=torch.channels_last)
        return (images.float() - self.mean) * self.inv_std


class TensorBatches:
    """A split held on `device` as uint8; yields normalised float batches (NHWC when `channels_last`)."""

    def __init__(
        self,
        split: ArraySplit,
        data: LTData,
        device: torch.device,
        pad: int,
        flip: bool,
        channels_last: bool = False,
    ) -> None:
        self.images = torch.as_tensor(split.images).to(device)
        self.labels = torch.as_tensor(split.labels).to(device)
        self.normalise = Normaliser(data, device, channels_last)
        self.device = device
        self.pad, self.flip = pad, flip

    def __len__(self) -> int:
        return len(self.labels)

    def train_batches(self, indices: torch.Tensor, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        """The epoch's batches. Its indices and every batch's augmentation draws go to the device in one
        copy before the first batch, so the loop issues device work only and never waits on the host."""
        for _, images, labels in self._epoch_images(indices, batch_size, generator):
            yield self.normalise(images), labels

    def _epoch_images(
        self, indices: torch.Tensor, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Each batch of the epoch as (its uint8 images as stored, the same cropped and flipped, its labels)."""
        if len(indices) == 0:
            return
        augment = self.pad > 0 or self.flip
        sizes = [min(batch_size, len(indices) - start) for start in range(0, len(indices), batch_size)]
        rows = [indices.to("cpu", torch.int64)[None]]
        if augment:  # same generator calls, in the same order, as drawing batch by batch
            rows.append(torch.cat([draw_crop_flip(n, self.pad, self.flip, generator) for n in sizes], 1))
        plan = to_device(torch.cat(rows), self.device)
        for chunk in plan.split(batch_size, dim=1):
            idx = chunk[0]
            # index_select, not images[idx]: same bytes, ~30x faster on CPU than advanced indexing
            raw = self.images.index_select(0, idx)
            images = apply_crop_flip(raw, chunk[1:], self.pad) if augment else raw
            yield raw, images, self.labels.index_select(0, idx)

    def viewed_batches(
        self,
        indices: torch.Tensor,
        batch_size: int,
        generator: torch.Generator,
        views: tuple[str, ...],
        paired: torch.Tensor | None = None,
    ) -> Iterator[tuple[ViewedImages, torch.Tensor]]:
        """`train_batches` with, for every batch, one view per policy of `views` made from the same
        un-augmented images, and (when `paired` holds a second sampler's indices for the epoch) the batch of
        those indices at the same position, augmented the same ways. The standard views' draws are made as in
        `train_batches`; then, batch by batch, each view's, the paired batch's crop and flip, its views'."""

        def views_of(raw: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(self.normalise(apply_policy(policy, raw, generator)) for policy in views)

        if paired is not None:  # the second stream walks beside the first, cycling if it is shorter
            paired = paired.to("cpu", torch.int64).repeat(-(-len(indices) // max(len(paired), 1)))[: len(indices)]
        starts = range(0, len(indices), batch_size)
        epoch = self._epoch_images(indices, batch_size, generator)
        for start, (raw, images, labels) in zip(starts, epoch, strict=True):
            made = views_of(raw)
            second = None
            if paired is not None:
                idx = paired[start : start + batch_size].to(self.device)
                raw = self.images.index_select(0, idx)
                standard_view = random_crop_flip(raw, self.pad, self.flip, generator)
                second = (self.normalise(standard_view), self.labels.index_select(0, idx), views_of(raw))
            yield ViewedImages(self.normalise(images), made, second), labels

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        for start in range(0, len(self.labels), batch_size):
            yield (
                self.normalise(self.images[start : start + batch_size]),
                self.labels[start : start + batch_size],
            )


class _SwappableBatches:
    """A batch sampler whose batches the trainer replaces every epoch."""

    batches: list[list] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _ImageFiles(torch.utils.data.Dataset):
    def __init__(self, split: FileSplit, transform) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, item: int | tuple[int, int]):
        """`item` is an index (evaluation) or (index, seed): the seed fixes this image's augmentation draws, so
        they depend on the epoch's generator alone, not on which worker decodes it or on a resume."""
        from PIL import Image

        i, seed = item if isinstance(item, tuple) else (item, None)
        with Image.open(self.split.root / self.split.paths[i]) as img:
            if seed is None:
                image = self.transform(img.convert("RGB"))
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)  # torchvision's random transforms draw from torch's global RNG
                    image = self.transform(img.convert("RGB"))
        return image, int(self.split.labels[i])


class FileBatches:
    """A file split decoded by DataLoader workers (Kang et al.'s ImageNet-LT transforms)."""

    def __init__(
        self,
        split: FileSplit,
        data: LTData,
        device: torch.device,
        train: bool,
        workers: int,
        channels_last: bool = False,
        color_jitter: bool = True,
    ) -> None:
        from torchvision import transforms as T

        # Workers decode and augment on PIL images and hand over uint8 tensors; normalisation happens on
        # the device (`Normaliser`), so pinned buffers and host-to-device copies are a quarter of float32's.
        if train:
            jitter = [T.ColorJitter(0.4, 0.4, 0.4, 0)] if color_jitter else []  # Kang et al.'s; not Menon et al.'s
            tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), *jitter, T.PILToTensor()])
        else:
            tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.PILToTensor()])
        self.dataset = _ImageFiles(split, tf)
        self.labels = torch.as_tensor(split.labels)
        self.device, self.workers = device, workers
        self.normalise = Normaliser(data, device, channels_last)
        self.loader_kwargs = dict(num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0)

    def __len__(self) -> int:
        return len(self.dataset)

    def _iterate(self, loader) -> Iterator[Batch]:
        for images, labels in loader:
            images = images.to(self.device, non_blocking=True)  # from pinned memory: asynchronous
            yield self.normalise(images), labels.to(self.device, non_blocking=True)

    def train_batches(self, indices: torch.Tensor, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        # One DataLoader for the whole trial keeps its workers alive across epochs; each epoch only swaps
        # the index batches it walks through.
        if not hasattr(self, "_train_loader"):
            self._epoch_batches = _SwappableBatches()
            self._train_loader = torch.utils.data.DataLoader(
                self.dataset, batch_sampler=self._epoch_batches, **self.loader_kwargs
            )
        # every image of the epoch gets its own augmentation seed from the epoch's generator
        seeds = torch.randint(2**62, (len(indices),), generator=generator)
        self._epoch_batches.batches = [
            list(zip(b.tolist(), s.tolist(), strict=True))
            for b, s in zip(indices.split(batch_size), seeds.split(batch_size), strict=True)
        ]
        yield from self._iterate(self._train_loader)

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        if not hasattr(self, "_eval_loader"):
            self._eval_loader = torch.utils.data.DataLoader(
                self.dataset, batch_size=batch_size, shuffle=False, **self.loader_kwargs
            )
        yield from self._iterate(self._eval_loader)


@dataclass(frozen=True)
class WithViews:
    """The training batches of an epoch for a method that asks for views or a paired stream: a batch source
    (`train_batches`) the epoch loop walks like any other, yielding `ViewedImages`."""

    batches: TensorBatches
    views: tuple[str, ...]
    paired: torch.Tensor | None = None  # the second sampler's indices for this epoch

    def train_batches(
        self, indices: torch.Tensor, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[ViewedImages, torch.Tensor]]:
        return self.batches.viewed_batches(indices, batch_size, generator, self.views, self.paired)


def make_batches(
    split: Split,
    data: LTData,
    device: torch.device,
    train: bool,
    pad: int,
    flip: bool,
    workers: int = 0,
    channels_last: bool = False,
    augmentation: str = "standard",
) -> TensorBatches | FileBatches:
    """Batches of `split`; `augmentation` (a `DataOptions.augmentation`) matters for file datasets only: 32 px
    training images are padded, cropped and flipped under either policy."""
    if isinstance(split, ArraySplit):
        return TensorBatches(split, data, device, pad if train else 0, flip and train, channels_last)
    return FileBatches(split, data, device, train, workers, channels_last, augmentation == "standard")
