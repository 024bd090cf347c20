"""Tiny fake datasets written in exactly the real on-disk formats.

Each writer returns what it wrote (pixel arrays, labels, relative paths) so tests can check that a loader
gives back exactly those bytes. Sizes are kept tiny; the long-tail profile is applied to them with a small
n_max through `DataOptions(max_per_class=...)`.

Formats (SPEC.md section 1):
- CIFAR-10: `cifar-10-batches-py/` with data_batch_1..5, test_batch, batches.meta; each batch a pickled dict
  with `data` (N x 3072 uint8, CHW row-major) and `labels` (a list of ints).
- CIFAR-100: `cifar-100-python/` with train, test, meta; `fine_labels` (and `coarse_labels`).
- Fashion-MNIST: IDX files `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-...`, raw or `.gz`;
  big-endian magic 0x00000803 (uint8, 3 dims N, 28, 28) for images and 0x00000801 (uint8, 1 dim N) for labels.
- ImageNet-LT: `ImageNet_LT_{train,val,test}.txt` with `<relpath> <label>` lines, relpaths relative to an
  ILSVRC-2012 style root holding `train/<wnid>/<wnid>_<k>.JPEG` and `val/ILSVRC2012_val_<8 digits>.JPEG`.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CIFAR10_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip


@dataclass
class FakeArrays:
    """What a fake in-memory dataset holds, in file order."""

    train_images: np.ndarray  # CIFAR: (N, 3072) rows as written; Fashion-MNIST: (N, 28, 28)
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def _labels(num_classes: int, per_class: int, rng: np.random.RandomState) -> np.ndarray:
    """Balanced labels in a shuffled (interleaved) file order, like the real files."""
    labels = np.repeat(np.arange(num_classes), per_class)
    rng.shuffle(labels)
    return labels.astype(np.int64)


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, per_class: int = 30, test_per_class: int = 2, seed: int = 0) -> FakeArrays:
    """Write `root/cifar-10-batches-py/` with 10 classes x `per_class` train images over 5 batches."""
    rng = np.random.RandomState(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train_labels = _labels(10, per_class, rng)
    train = rng.randint(0, 256, size=(len(train_labels), 3072)).astype(np.uint8)
    test_labels = _labels(10, test_per_class, rng)
    test = rng.randint(0, 256, size=(len(test_labels), 3072)).astype(np.uint8)
    batches = zip(np.array_split(train, 5), np.array_split(train_labels, 5), strict=True)
    for b, (data, labels) in enumerate(batches, start=1):
        _pickle(
            folder / f"data_batch_{b}",
            {
                "batch_label": f"training batch {b} of 5",
                "labels": [int(x) for x in labels],
                "data": data,
                "filenames": [f"fake_{b}_{i}.png" for i in range(len(labels))],
            },
        )
    _pickle(
        folder / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "labels": [int(x) for x in test_labels],
            "data": test,
            "filenames": [f"fake_test_{i}.png" for i in range(len(test_labels))],
        },
    )
    _pickle(
        folder / "batches.meta",
        {"num_cases_per_batch": len(train) // 5, "label_names": CIFAR10_NAMES, "num_vis": 3072},
    )
    return FakeArrays(train, train_labels, test, test_labels)


def write_cifar100(root: Path, per_class: int = 10, test_per_class: int = 1, seed: int = 0) -> FakeArrays:
    """Write `root/cifar-100-python/` (train, test, meta) with 100 classes x `per_class` train images."""
    rng = np.random.RandomState(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    train_labels = _labels(100, per_class, rng)
    train = rng.randint(0, 256, size=(len(train_labels), 3072)).astype(np.uint8)
    test_labels = _labels(100, test_per_class, rng)
    test = rng.randint(0, 256, size=(len(test_labels), 3072)).astype(np.uint8)
    for name, data, labels in (("train", train, train_labels), ("test", test, test_labels)):
        _pickle(
            folder / name,
            {
                "filenames": [f"fake_{name}_{i}.png" for i in range(len(labels))],
                "batch_label": f"{name}ing batch 1 of 1",
                "fine_labels": [int(x) for x in labels],
                "coarse_labels": [int(x) // 5 for x in labels],
                "data": data,
            },
        )
    _pickle(
        folder / "meta",
        {
            "fine_label_names": [f"fine_{i}" for i in range(100)],
            "coarse_label_names": [f"coarse_{i}" for i in range(20)],
        },
    )
    return FakeArrays(train, train_labels, test, test_labels)


IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801
FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def idx_bytes(array: np.ndarray) -> bytes:
    """An uint8 array as an IDX file: magic 0x0000 08 <ndim>, big-endian int32 dims, then the data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x00000800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def write_fashion_mnist(
    root: Path, per_class: int = 12, test_per_class: int = 2, gz: bool = False, seed: int = 0
) -> FakeArrays:
    """Write the four Fashion-MNIST IDX files (raw, or `.gz` when `gz`) directly under `root`."""
    rng = np.random.RandomState(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    train_labels = _labels(10, per_class, rng)
    train = rng.randint(0, 256, size=(len(train_labels), 28, 28)).astype(np.uint8)
    test_labels = _labels(10, test_per_class, rng)
    test = rng.randint(0, 256, size=(len(test_labels), 28, 28)).astype(np.uint8)
    write_idx(root / FASHION_FILES["train_images"], train, gz)
    write_idx(root / FASHION_FILES["train_labels"], train_labels, gz)
    write_idx(root / FASHION_FILES["test_images"], test, gz)
    write_idx(root / FASHION_FILES["test_labels"], test_labels, gz)
    return FakeArrays(train, train_labels, test, test_labels)


@dataclass
class FakeImageNetLT:
    root: Path  # the ILSVRC-style root holding train/ and val/
    split_dir: Path  # where the ImageNet_LT_*.txt files are
    splits: dict[str, tuple[list[str], list[int]]] = field(default_factory=dict)

    def split_file(self, split: str) -> Path:
        return self.split_dir / f"ImageNet_LT_{split}.txt"


def wnid(c: int) -> str:
    return f"n{1440764 + 1000 * c:08d}"


def _jpeg(path: Path, color: tuple[int, int, int]) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 10), color).save(path, format="JPEG")


def write_split_file(path: Path, paths: list[str], labels: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{p} {y}\n" for p, y in zip(paths, labels, strict=True)))


def write_imagenet_lt(
    root: Path,
    train_counts: tuple[int, ...] = (6, 4, 3, 2, 1),
    val_per_class: int = 2,
    test_per_class: int = 2,
    split_subdir: str | None = None,
) -> FakeImageNetLT:
    """An ILSVRC-style root with tiny real JPEGs and ImageNet-LT split files.

    Train and val images come from `train/<wnid>/` (ImageNet-LT's val is taken from ILSVRC train); test
    lines point into `val/`. Split files go in `root` or in `root/<split_subdir>` (e.g. "ImageNet_LT").
    """
    root = Path(root)
    fake = FakeImageNetLT(root, root / split_subdir if split_subdir else root)
    train_p, train_y, val_p, val_y, test_p, test_y = [], [], [], [], [], []
    val_no = 0
    for c, n in enumerate(train_counts):
        color = (40 * c % 256, 255 - 40 * c % 256, 128)
        for k in range(n + val_per_class):
            rel = f"train/{wnid(c)}/{wnid(c)}_{1000 + k}.JPEG"
            _jpeg(root / rel, color)
            (train_p if k < n else val_p).append(rel)
            (train_y if k < n else val_y).append(c)
        for _ in range(test_per_class):
            val_no += 1
            rel = f"val/ILSVRC2012_val_{val_no:08d}.JPEG"
            _jpeg(root / rel, color)
            test_p.append(rel)
            test_y.append(c)
    fake.splits = {"train": (train_p, train_y), "val": (val_p, val_y), "test": (test_p, test_y)}
    for split, (paths, labels) in fake.splits.items():
        write_split_file(fake.split_file(split), paths, labels)
    return fake
