"""Dataset definitions and the long-tailed data bundle every trial trains on.

A `DatasetSpec` knows one benchmark: where its files live, its class count, image statistics and how to
read it. `assemble` applies the shared long-tail rules of `harness.data.profile` to any spec, so the profile,
selection and validation split are written once for all datasets.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from harness.core.errors import LtbenchError
from harness.core.registry import Registry
from harness.data.profile import (
    bucket_sizes,
    draw_validation,
    exp_profile,
    select_indices,
    taken_from_lt,
)

DATA_ENV = "LTBENCH_DATA"
AUGMENTATIONS = ("standard", "crop-flip")
SEED_FROM_TRIAL = "seed"  # data.data_seed value meaning "the trial's own seed"


@dataclass(frozen=True)
class DataOptions:
    """Dataset options a suite may set; all but `root` and `download` are part of the trial key."""

    root: str | None = None
    selection: str = "random"  # LDAM-DRW's choice; "first" is Weight Balancing's and LORT's
    # which images (random selection) and which validation images: an int, or "seed" for the trial's seed, so
    # that the ± over seeds includes the 1.5-3 points that the choice of images moves
    data_seed: int | str = 0
    max_per_class: int | None = None  # caps n_max before the profile (the quick suite uses 1000)
    val_per_class: int | None = None  # validation images per class; None: the dataset's default
    # training augmentation (AUGMENTATIONS): "standard" is the dataset's usual one (32 px: pad-4 crop and flip;
    # ImageNet-LT: Kang et al.'s random-resized crop, flip and ColorJitter(0.4, 0.4, 0.4)); "crop-flip" leaves
    # out the colour jitter (Menon et al.'s Appendix D; the same as "standard" at 32 px)
    augmentation: str = "standard"
    download: bool = False

    def identity(self) -> dict:
        """The options that change which images a trial sees (what the trial key hashes)."""
        d = asdict(self)
        d.pop("root")
        d.pop("download")
        return d

    def for_seed(self, seed: int) -> DataOptions:
        """These options with `data_seed: seed` resolved to the trial's seed."""
        return replace(self, data_seed=seed) if self.data_seed == SEED_FROM_TRIAL else self

    @property
    def resolved_data_seed(self) -> int:
        if not isinstance(self.data_seed, int) or isinstance(self.data_seed, bool):
            raise LtbenchError(
                f"data.data_seed is {self.data_seed!r}: give an integer, or {SEED_FROM_TRIAL!r} inside a suite "
                "(data describe takes --data-seed N)"
            )
        return self.data_seed


@dataclass
class ArraySplit:
    """Images held in memory as one uint8 array (N, C, H, W) with int64 labels."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class FileSplit:
    """Images stored as files under `root` (ImageNet-LT); decoded by DataLoader workers."""

    root: Path
    paths: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


Split = ArraySplit | FileSplit


@dataclass
class LTData:
    """What a trial trains and evaluates on."""

    dataset: str
    num_classes: int
    class_counts: list[int]  # the long-tail profile; defines the shot buckets
    train: Split
    val: Split
    test: Split
    mean: tuple[float, ...]
    std: tuple[float, ...]
    manifest: dict = field(default_factory=dict)  # which source images went to train and val

    @property
    def train_counts(self) -> list[int]:
        """Images per class actually trained on: the profile, less any validation images a class without enough
        spare source images had to give from its own LT images."""
        return np.bincount(self.train.labels, minlength=self.num_classes).tolist()


@dataclass(frozen=True)
class Description:
    """What `ltbench data describe` prints: the profile (which defines the buckets) and what is trained on."""

    class_counts: list[int]  # the long-tail profile
    train_counts: list[int]  # what the model trains on
    num_test: int
    num_val: int
    val_per_class: int
    val_from_lt: list[int]  # per class: validation images taken from the class's LT images

    def as_dict(self) -> dict:
        return {
            "class_counts": self.class_counts,
            "num_profile": int(sum(self.class_counts)),
            "train_counts": self.train_counts,
            "num_train": int(sum(self.train_counts)),
            "buckets": bucket_sizes(self.class_counts),
            "num_test": self.num_test,
            "num_val": self.num_val,
            "val_per_class": self.val_per_class,
            "val_from_lt": {str(c): t for c, t in enumerate(self.val_from_lt) if t},
        }


class DatasetSpec:
    """One benchmark. Subclasses for in-memory data implement `read_arrays`; others override `build`."""

    name: str
    num_classes: int
    n_max: int
    num_test: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    default_model: str
    default_recipe: str
    val_per_class: int = 100  # default validation images per class (enough to choose on; 20 for 100 classes)
    pad: int = 4  # random-crop padding of the training augmentation
    flip: bool = True
    folder: str = ""  # sub-folder name searched under the data roots
    how_to_get: str = ""
    fetchable: bool = True  # `ltbench data fetch` can get the files (ImageNet-LT's need a licence: by hand)
    # held on the device as one uint8 tensor (ArraySplit), where a method's extra views and a transductive
    # method's unlabeled views are made; False for datasets decoded from files by DataLoader workers
    in_memory: bool = True
    class_names: tuple[str, ...] = ()  # by class id; empty when the dataset has too many to list here

    # -- where the files are -------------------------------------------------------------------------
    def candidate_roots(self, options: DataOptions) -> list[Path]:
        if options.root:
            return [Path(options.root).expanduser()]
        roots = []
        if os.environ.get(DATA_ENV):
            roots.append(Path(os.environ[DATA_ENV]).expanduser())
        roots += [Path("data"), Path.home() / ".cache" / "ltbench"]
        return roots

    def download_root(self, options: DataOptions) -> Path:
        return self.candidate_roots(options)[0]

    def missing(self, where: list[Path], detail: str = "") -> LtbenchError:
        searched = ", ".join(str(p) for p in where)
        extra = f" ({detail})" if detail else ""
        fetch = f"Run `ltbench data fetch {self.name}`, or: " if self.fetchable else ""
        return LtbenchError(
            f"{self.name}: dataset files not found{extra}; searched {searched}. {fetch}{self.how_to_get}"
        )

    def locate(self, options: DataOptions) -> Path | None:
        """Where the dataset's files are, or None when they are missing."""
        raise NotImplementedError

    def check_available(self, options: DataOptions) -> list[int] | None:
        """Raise a `LtbenchError` saying what is wrong with the files (missing, truncated, corrupt) and how to
        get them, before any trial starts. In-memory datasets are small enough to read here in full; what was
        read comes back as the source's images per class (None when nothing was read), for `check_validation`."""
        if options.download:
            return None
        if self.locate(options) is None:
            raise self.missing(self.candidate_roots(options))
        source, _ = self.read_arrays(options)
        return self.source_class_counts(source.labels)

    def source_class_counts(self, labels: np.ndarray) -> list[int]:
        """Images per class in the source's training labels, refusing files no profile can be drawn from:
        none at all, or labels outside the class range (a corrupt or foreign label file)."""
        if len(labels) == 0:
            raise LtbenchError(f"{self.name}: the training files hold no training images; fetch the dataset again")
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= self.num_classes:
            raise LtbenchError(
                f"{self.name}: the training labels hold labels outside 0..{self.num_classes - 1} (from {low} to "
                f"{high}); these are not this dataset's label files, fetch them again"
            )
        return np.bincount(labels, minlength=self.num_classes).tolist()

    # -- the long-tail profile ----------------------------------------------------------------------
    def class_counts(self, imbalance_ratio: float | None, options: DataOptions) -> list[int]:
        if imbalance_ratio is None:
            raise LtbenchError(f"{self.name} needs an imbalance ratio (e.g. 10, 50, 100 or 200)")
        n_max = self.n_max if options.max_per_class is None else min(self.n_max, int(options.max_per_class))
        if n_max < 1:
            raise LtbenchError(f"max_per_class must be a positive integer, got {options.max_per_class}")
        return exp_profile(n_max, self.num_classes, imbalance_ratio)

    def validation_size(self, options: DataOptions) -> int:
        return self.val_per_class if options.val_per_class is None else int(options.val_per_class)

    def describe(
        self, imbalance_ratio: float | None, options: DataOptions, source_counts: list[int] | None = None
    ) -> Description:
        """The profile, validation split and training counts; drawn from `source_counts` (what the files hold,
        from `check_available`) when given, else from balanced sources of n_max images a class."""
        counts = self.class_counts(imbalance_ratio, options)
        k = self.validation_size(options)
        taken = taken_from_lt(counts, source_counts or [self.n_max] * self.num_classes, k)
        train = [n - t for n, t in zip(counts, taken, strict=True)]
        return Description(counts, train, self.num_test, k * self.num_classes, k, taken)

    def check_validation(
        self, imbalance_ratio: float | None, options: DataOptions, source_counts: list[int] | None
    ) -> None:
        """Raise a `LtbenchError` before any trial starts when the source's classes (`source_counts`, what
        `check_available` read; the nominal n_max each when None) cannot give the validation split asked for
        beside the profile."""
        counts = self.class_counts(imbalance_ratio, options)
        taken_from_lt(counts, source_counts or [self.n_max] * self.num_classes, self.validation_size(options))

    # -- loading --------------------------------------------------------------------------------------
    def read_arrays(self, options: DataOptions) -> tuple[ArraySplit, ArraySplit]:
        """Return the full (train, test) source data as uint8 NCHW arrays."""
        raise NotImplementedError

    def build(self, imbalance_ratio: float | None, options: DataOptions) -> LTData:
        counts = self.class_counts(imbalance_ratio, options)
        source_train, test = self.read_arrays(options)
        return assemble(self, counts, source_train, test, options)


def assemble(spec: DatasetSpec, counts: list[int], source_train: Split, test: Split, options: DataOptions) -> LTData:
    """Select the LT subset of `source_train`, draw the validation split beside it and record the manifest."""
    seed = options.resolved_data_seed
    lt_idx = select_indices(source_train.labels, counts, options.selection, seed)
    split = draw_validation(source_train.labels, lt_idx, spec.validation_size(options), seed)
    train_idx, val_idx = split.train_idx, split.val_idx
    return LTData(
        dataset=spec.name,
        num_classes=spec.num_classes,
        class_counts=list(counts),
        train=subset(source_train, train_idx),
        val=subset(source_train, val_idx),
        test=test,
        mean=spec.mean,
        std=spec.std,
        manifest={
            "dataset": spec.name,
            "options": options.identity(),
            "class_counts": list(counts),
            "train_indices": train_idx.tolist(),
            "val_indices": val_idx.tolist(),
            "val_from_lt": split.taken_from_lt,
        },
    )


def subset(split: Split, idx: np.ndarray) -> Split:
    if isinstance(split, ArraySplit):
        return ArraySplit(split.images[idx], split.labels[idx])
    return FileSplit(split.root, [split.paths[i] for i in idx], split.labels[idx])


DATASETS: Registry[DatasetSpec] = Registry("dataset")
