"""CIFAR-10-LT and CIFAR-100-LT from torchvision's on-disk layouts.

`cifar-10-batches-py/` holds data_batch_1..5 and test_batch; `cifar-100-python/` holds train and test.
Each is a pickled dict with `data` (N x 3072 uint8, CHW row-major) and `labels` / `fine_labels`.
Downloading (torchvision's) happens only when the user sets data.download=true.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.data.base import DATASETS, ArraySplit, DataOptions, DatasetSpec
from harness.data.formats import read_cifar_batch

# LDAM-DRW normalises both CIFARs with CIFAR-10's statistics; we keep that for comparability.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


class CifarLT(DatasetSpec):
    num_test = 10_000
    mean = CIFAR_MEAN
    std = CIFAR_STD
    default_model = "resnet32"
    default_recipe = "cifar-lt"
    pad = 4
    flip = True
    label_key: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    torchvision_class: str

    @property
    def how_to_get(self) -> str:  # type: ignore[override]
        return (
            f"Put torchvision's '{self.folder}/' folder under data.root (or $LTBENCH_DATA, ./data), "
            "or set data.download=true on a machine that is online"
        )

    def locate(self, options: DataOptions) -> Path | None:
        for root in self.candidate_roots(options):
            if (root / self.folder).is_dir():
                return root / self.folder
        return None

    def read_arrays(self, options: DataOptions) -> tuple[ArraySplit, ArraySplit]:
        folder = self.locate(options)
        if folder is None and options.download:
            import torchvision.datasets

            getattr(torchvision.datasets, self.torchvision_class)(str(self.download_root(options)), download=True)
            folder = self.locate(options)
        if folder is None:
            raise self.missing(self.candidate_roots(options), f"no {self.folder}/ folder")
        return self._read(folder, self.train_files), self._read(folder, self.test_files)

    def _read(self, folder: Path, names: tuple[str, ...]) -> ArraySplit:
        parts = []
        for name in names:
            path = folder / name
            if not path.is_file():
                raise self.missing([folder], f"{name} is missing")
            parts.append(read_cifar_batch(path, self.label_key))
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        return ArraySplit(images, labels)


_CIFAR100_NAMES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly "
    "camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup "
    "dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower "
    "leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid "
    "otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray "
    "road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar "
    "sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle "
    "wardrobe whale willow_tree wolf woman worm"
)
CIFAR100_CLASSES = tuple(_CIFAR100_NAMES.split())


class Cifar10LT(CifarLT):
    name = "cifar10-lt"
    num_classes = 10
    n_max = 5000
    folder = "cifar-10-batches-py"
    label_key = "labels"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_files = ("test_batch",)
    torchvision_class = "CIFAR10"
    class_names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class Cifar100LT(CifarLT):
    name = "cifar100-lt"
    num_classes = 100
    n_max = 500
    val_per_class = 20  # as ImageNet-LT: 20 per class (2,000 images)
    folder = "cifar-100-python"
    label_key = "fine_labels"
    train_files = ("train",)
    test_files = ("test",)
    torchvision_class = "CIFAR100"
    class_names = CIFAR100_CLASSES  # batches.meta's `fine_label_names`, in label order (alphabetical)


DATASETS.register(Cifar10LT.name, Cifar10LT())
DATASETS.register(Cifar100LT.name, Cifar100LT())
