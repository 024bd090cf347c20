"""The long-tailed training subset: class sizes, which images, shot buckets and the validation carve.

Everything here is pure NumPy on label arrays, so it is exact, fast and testable without image data.
Source of the rules: SPEC.md section 1 (Cao et al. 2019's "exp" profile, LDAM-DRW's selection).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.errors import LtbenchError, unknown_choice

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
class ValidationCarve:
    """How many images per class are moved from the LT training set into the validation split.

    The split is class-balanced: every class gives the same k = clamp(floor(fraction * n_min), 1, max_per_class)
    images, so that the selection metric (mean per-class accuracy on validation) weighs every class alike and
    no class is left without training images. There is no official validation split for CIFAR-LT; the
    literature tunes on test, which ltbench never does.
    """

    fraction: float = 0.2
    max_per_class: int = 20

    def per_class(self, counts: list[int]) -> int:
        n_min = min(counts)
        if n_min < 2:
            raise LtbenchError(
                f"the smallest class has {n_min} training image(s): nothing can be carved for validation; "
                "use a smaller imbalance ratio"
            )
        k = int(self.fraction * n_min)
        return max(1, min(k, self.max_per_class, n_min - 1))


def carve_validation(
    train_idx: np.ndarray, labels: np.ndarray, k: int, data_seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split LT training indices into (train, val) with k validation images of every class.

    Which k images is drawn with a RNG seeded by `data_seed`, independent of the training seed, so every
    method and seed sees the same split.
    """
    rng = np.random.RandomState(data_seed + 7919)
    keep, val = [], []
    for c in np.unique(labels[train_idx]):
        idx = train_idx[labels[train_idx] == c]
        chosen = np.zeros(len(idx), dtype=bool)
        chosen[rng.choice(len(idx), size=k, replace=False)] = True
        val.append(idx[chosen])
        keep.append(idx[~chosen])
    return np.concatenate(keep), np.concatenate(val)
