"""Datasets: the long-tail profile, on-disk readers, and the batch pipeline.

Importing this package registers the built-in datasets in `DATASETS`.
"""

from harness.data import cifar, fashion_mnist, imagenet_lt  # noqa: F401  (registration)
from harness.data.base import DATASETS, DataOptions, LTData

__all__ = ["DATASETS", "DataOptions", "LTData"]
