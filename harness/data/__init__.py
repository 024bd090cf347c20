"""Datasets: the long-tail profile, on-disk readers, and the batch pipeline.

Importing this package registers the built-in datasets in `DATASETS` and the augmentation ops in
`augment.AUGMENT_OPS` (the registry's own module holds crop and flip; the policy and view ops live beside it and
import it, so it is this package, which any import of `harness.data.augment` runs first, that imports them).
"""

from harness.data import augment_policies, augment_views, cifar, fashion_mnist, imagenet_lt  # noqa: F401  (registration)
from harness.data.base import DATASETS, DataOptions, LTData

__all__ = ["DATASETS", "DataOptions", "LTData"]
