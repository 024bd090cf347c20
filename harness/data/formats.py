"""Readers for the real on-disk formats: IDX (MNIST family), CIFAR's pickled batches, ImageNet-LT split files.

Each reader turns a missing or malformed file into a `LtbenchError` naming the file and how to get it,
because these are the errors a user meets first on a new cluster.
"""

from __future__ import annotations

import gzip
import pickle
import zlib
from pathlib import Path

import numpy as np

from harness.core.errors import LtbenchError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4")}


def find_idx_file(root: Path, stem: str) -> Path:
    """`stem` or `stem.gz` under root (torchvision keeps both; Debian ships only .gz)."""
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(root / stem)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (raw or gzipped): magic 0x0000 <dtype> <ndim>, big-endian int32 dims, then data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise LtbenchError(f"cannot read IDX file {path}: {e}; delete it and fetch the dataset again") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise LtbenchError(f"{path} is not an IDX file (bad magic number); delete it and fetch it again")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise LtbenchError(f"{path} is truncated inside its header; delete it and fetch it again")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise LtbenchError(
            f"{path} is truncated or corrupt: header says shape {shape} ({expected} bytes of data) but the file "
            f"holds {len(raw) - header}; delete it and fetch it again"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR python batch: a pickled dict with `data` (N x 3072 uint8, CHW) and the label list."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry[label_key], dtype=np.int64)
    except FileNotFoundError:
        raise
    except Exception as e:  # unpickling errors come in many types
        raise LtbenchError(f"{path} is not a readable CIFAR batch ({e}); delete it and fetch it again") from e
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise LtbenchError(f"{path}: expected data of shape N x 3072 and N labels, got {data.shape}/{len(labels)}")
    return data.reshape(-1, 3, 32, 32), labels


def read_split_file(path: Path) -> tuple[list[str], np.ndarray]:
    """An ImageNet-LT split file: one `<relative path> <integer label>` per line."""
    if not path.is_file():
        raise FileNotFoundError(path)
    paths, labels = [], []
    with open(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit() or int(parts[1]) < 0:
                raise LtbenchError(
                    f"{path}:{lineno}: malformed line {line.rstrip()!r}; expected '<relative path> <label>' "
                    "with a non-negative integer label"
                )
            paths.append(parts[0])
            labels.append(int(parts[1]))
    if not paths:
        raise LtbenchError(f"{path} holds no samples; expected '<relative path> <label>' lines")
    return paths, np.asarray(labels, dtype=np.int64)
