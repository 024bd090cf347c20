"""The data each bench case runs on: real files when this machine has them, else synthetic stand-ins.

Two cases, the shapes ltbench trains on: Fashion-MNIST-LT (1x28x28, the quick suite's data, its model and
recipe) and a CIFAR-shaped 3x32x32 case (ResNet-32, the cifar-lt recipe). Throughput does not depend on
pixel values, so when the files are missing synthetic uint8 data of the same shape stands in; the case name
says which it was.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.data import DATASETS, DataOptions, LTData
from harness.data.base import ArraySplit
from harness.data.cifar import CIFAR_MEAN, CIFAR_STD
from harness.training.recipes import RECIPES, Recipe

QUICK_RATIO = 100  # the quick suite's first ratio
QUICK_MAX_PER_CLASS = 1000  # ... and its cap
CIFAR_RATIO = 100


@dataclass
class BenchCase:
    name: str  # shown in the table, says real or synthetic
    data: LTData  # mean/std for normalisation
    train: ArraySplit  # the images the case runs on
    pad: int
    flip: bool
    model: str
    recipe: Recipe

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.train.images.shape[1:])

    def head(self, n: int | None) -> ArraySplit:
        """The first `n` training images (all when None): bounds a case's time without changing its shape."""
        if n is None or n >= len(self.train):
            return self.train
        return ArraySplit(self.train.images[:n], self.train.labels[:n])


def synthetic_cifar(n: int, seed: int = 0) -> LTData:
    """Random CIFAR-shaped uint8 images with 10 balanced labels, normalised with CIFAR's statistics."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.int64)
    rng.shuffle(labels)
    split = ArraySplit(images, labels)
    counts = np.bincount(labels, minlength=10).tolist()
    return LTData("synthetic-32x32x3", 10, counts, split, split, split, CIFAR_MEAN, CIFAR_STD)


def _cifar_case(name: str, data: LTData) -> BenchCase:
    return BenchCase(name, data, data.train, 4, True, "resnet32", RECIPES.get("cifar-lt"))


def fashion_case(root: str | None, synthetic_images: int) -> BenchCase:
    """Fashion-MNIST-LT as the quick suite builds it, or synthetic CIFAR-shaped data when it is missing."""
    spec = DATASETS.get("fashion-mnist-lt")
    options = DataOptions(root=root, max_per_class=QUICK_MAX_PER_CLASS)
    if spec.locate(options) is None:
        return _cifar_case("synthetic 3x32x32 (no Fashion-MNIST)", synthetic_cifar(synthetic_images))
    data = spec.build(QUICK_RATIO, options)
    name = f"fashion-mnist-lt r={QUICK_RATIO}"
    return BenchCase(name, data, data.train, spec.pad, spec.flip, spec.default_model, RECIPES.get("quick"))


def cifar_case(root: str | None, synthetic_images: int) -> BenchCase:
    """CIFAR-10-LT when its files are here, else synthetic data of CIFAR's shape."""
    spec = DATASETS.get("cifar10-lt")
    options = DataOptions(root=root)
    if spec.locate(options) is None:
        return _cifar_case("synthetic 3x32x32", synthetic_cifar(synthetic_images))
    return _cifar_case(f"cifar10-lt r={CIFAR_RATIO}", spec.build(CIFAR_RATIO, options))
