"""The long-tailed training subset: class sizes, which images, shot buckets and the validation split.

Everything here is pure NumPy on label arrays, so it is exact, fast and testable without image data.
Sources of the rules: docs/protocol.md (Cao et al. 2019's "exp" profile and LDAM-DRW's selection; the
ImageNet-LT way of drawing a validation split).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.core.errors import LtbenchError, unknown_choice

SELECTIONS = ("first", "random")
MANY_ABOVE = 100  # a class with more than 100 training images is "many-shot"
FEW_BELOW = 20  # fewer than 20 is "few-shot"; 20..100 inclusive is "medium"
BUCKETS = ("many", "medium", "few")


def exp_profile(n_max: int, num_classes: int, imbalance_ratio: float) -> list[int]:
    """Per-class sizes of the "exp" profile: class i keeps int(n_max * (1/r) ** (i / (C - 1))).

    Truncation (not rounding) is what the literature's code does, and it is why CIFAR-100-LT "r=200"
    ends with classes of 2 images.
    """
    if imbalance_ratio < 1:
        raise LtbenchError(
            f"imbalance ratio must be >= 1 (n_max / n_min), got {imbalance_ratio}; use e.g. 10, 50, 100, 200"
        )
    if num_classes < 2:
        return [int(n_max)] * num_classes
    return [int(n_max * (1.0 / imbalance_ratio) ** (i / (num_classes - 1))) for i in range(num_classes)]


def select_indices(labels: np.ndarray, counts: list[int], selection: str = "first", data_seed: int = 0) -> np.ndarray:
    """Indices (into `labels`) of the kept training images, class by class in class order.

    `first` keeps the first n_c images of class c in file order (Weight Balancing, LORT).
    `random` follows LDAM-DRW: seed NumPy's global-style RNG once with `data_seed`, then for each class in
    order 0..C-1 shuffle that class's indices and keep the first n_c.
    """
    if selection not in SELECTIONS:
        raise unknown_choice("selection", selection, SELECTIONS)
    rng = np.random.RandomState(data_seed)
    kept = []
    for c, n in enumerate(counts):
        idx = np.flatnonzero(labels == c)
        if len(idx) < n:
            raise LtbenchError(f"class {c} has {len(idx)} images but the profile asks for {n}; check the dataset files")
        if selection == "random":
            rng.shuffle(idx)
        kept.append(idx[:n])
    return np.concatenate(kept).astype(np.int64)


def bucket_of(count: int) -> str:
    if count > MANY_ABOVE:
        return "many"
    if count < FEW_BELOW:
        return "few"
    return "medium"


def bucket_sizes(counts: list[int]) -> dict[str, int]:
    """Number of classes in each shot bucket."""
    sizes = dict.fromkeys(BUCKETS, 0)
    for n in counts:
        sizes[bucket_of(n)] += 1
    return sizes


def largest_cap_with_every_bucket(n_max: int, num_classes: int, imbalance_ratio: float) -> int | None:
    """The largest cap <= `n_max` on the head class whose "exp" profile puts a class in every shot bucket
    (what `max_per_class` to suggest when a bucket is empty), or None when no cap does at this ratio.

    A few-shot tail needs int(cap / r) < FEW_BELOW, so the search starts just above 20·r and walks down."""
    start = min(int(n_max), int(FEW_BELOW * imbalance_ratio) + 1)
    for cap in range(start, MANY_ABOVE, -1):
        if all(bucket_sizes(exp_profile(cap, num_classes, imbalance_ratio)).values()):
            return cap
    return None


@dataclass(frozen=True)
class ValidationSplit:
    """Which source images train and which validate, and how many validation images came out of the LT subset."""

    train_idx: np.ndarray
    val_idx: np.ndarray
    taken_from_lt: list[int]  # per class: validation images taken from the class's own LT images

    def train_counts(self, counts: list[int]) -> list[int]:
        return [n - t for n, t in zip(counts, self.taken_from_lt, strict=True)]


def taken_from_lt(counts: list[int], source_per_class: list[int], per_class: int) -> list[int]:
    """Per class, how many of `per_class` validation images its spare source images cannot give.

    Pure arithmetic (no image data), so `data describe` can say it without reading the files.
    """
    taken = []
    for c, (n, source) in enumerate(zip(counts, source_per_class, strict=True)):
        if source < n or source == 0:
            raise LtbenchError(
                f"class {c} has no training images in the dataset's files"
                if source == 0
                else f"class {c} has {source} image(s) in the dataset's files but the profile takes {n}; check the "
                "files (fetch them again) or lower data.max_per_class"
            )
        short = max(0, per_class - (source - n))
        if n - short < 1:
            raise LtbenchError(
                f"class {c} has {n} LT image(s) and {source - n} spare one(s): too few for {per_class} validation "
                "images; lower data.val_per_class"
            )
        taken.append(short)
    return taken


def draw_validation(labels: np.ndarray, lt_idx: np.ndarray, per_class: int, data_seed: int) -> ValidationSplit:
    """A class-balanced validation split of `per_class` images per class, drawn from the source training
    images that the LT subset did not select, so the LT training set keeps its profile exactly.

    This is how ImageNet-LT's validation split was made (20 images per class from ILSVRC training images outside
    the LT training set). CIFAR-LT has no official split (the literature tunes on test, which ltbench never
    does). Only a class with fewer spare images than `per_class` (the head class when n_max is its full size)
    gives the rest from its own LT images; `taken_from_lt` records how many. Which images is drawn with a
    generator seeded by `data_seed` alone, so every method and seed of a suite sees the same split.
    """
    if per_class < 1:
        raise LtbenchError(f"data.val_per_class must be a positive integer, got {per_class}")
    rng = np.random.RandomState(data_seed + 7919)
    in_lt = np.zeros(len(labels), dtype=bool)
    in_lt[lt_idx] = True
    train, val, taken = [], [], []
    for c in np.unique(labels[lt_idx]):
        kept = lt_idx[labels[lt_idx] == c]
        spare = np.flatnonzero((labels == c) & ~in_lt)
        from_spare = spare[rng.permutation(len(spare))[:per_class]]
        short = per_class - len(from_spare)
        if short >= len(kept):
            raise LtbenchError(
                f"class {c} has {len(kept)} LT image(s) and {len(spare)} spare one(s): too few for {per_class} "
                "validation images; lower data.val_per_class"
            )
        moved = np.zeros(len(kept), dtype=bool)
        moved[rng.choice(len(kept), size=short, replace=False)] = True
        val.append(np.concatenate([from_spare, kept[moved]]))
        train.append(kept[~moved])
        taken.append(short)
    return ValidationSplit(np.concatenate(train), np.sort(np.concatenate(val)), taken)
