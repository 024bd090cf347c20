"""Fashion-MNIST-LT: ltbench's small default, real data that runs on a laptop.

Read from the IDX files (raw or .gz). Debian's `dataset-fashion-mnist` installs them under
/usr/share/datasets/fashion-mnist/; torchvision's FashionMNIST downloads the same files to
<root>/FashionMNIST/raw/.
"""

from __future__ import annotations

from pathlib import Path

from harness.core.errors import LtbenchError
from harness.data.base import DATASETS, ArraySplit, DataOptions, DatasetSpec
from harness.data.formats import find_idx_file, read_idx

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class FashionMNISTLT(DatasetSpec):
    name = "fashion-mnist-lt"
    num_classes = 10
    n_max = 6000
    num_test = 10_000
    mean = (0.2860,)
    std = (0.3530,)
    default_model = "resnet-small-gray"
    default_recipe = "quick"
    class_names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")  # fmt: skip
    pad = 2
    flip = True
    how_to_get = (
        "Install Debian's 'dataset-fashion-mnist' (files land in /usr/share/datasets/fashion-mnist), point "
        "data.root at a folder holding the four IDX files, or set data.download=true to let torchvision fetch them"
    )

    def candidate_roots(self, options: DataOptions) -> list[Path]:
        roots = []
        for base in super().candidate_roots(options):
            roots += [base, base / "fashion-mnist", base / "FashionMNIST" / "raw"]
        if not options.root:
            roots.append(DEBIAN_DIR)
        return roots

    def locate(self, options: DataOptions) -> Path | None:
        for root in self.candidate_roots(options):
            try:
                for stem in FILES.values():
                    find_idx_file(root, stem)
                return root
            except FileNotFoundError:
                continue
        return None

    def read_arrays(self, options: DataOptions) -> tuple[ArraySplit, ArraySplit]:
        root = self.locate(options)
        if root is None and options.download:
            from torchvision.datasets import FashionMNIST

            target = super().candidate_roots(options)[0]
            FashionMNIST(str(target), train=True, download=True)
            root = self.locate(options)
        if root is None:
            raise self.missing(self.candidate_roots(options))
        arrays = {key: read_idx(find_idx_file(root, stem)) for key, stem in FILES.items()}
        for split in ("train", "test"):
            images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
            if images.ndim != 3 or len(images) != len(labels):
                raise LtbenchError(
                    f"{root}: {split} images of shape {images.shape} do not match {len(labels)} labels; "
                    "the IDX files are inconsistent, fetch them again"
                )
        return (
            ArraySplit(arrays["train_images"][:, None].copy(), arrays["train_labels"].astype("int64")),
            ArraySplit(arrays["test_images"][:, None].copy(), arrays["test_labels"].astype("int64")),
        )


DATASETS.register(FashionMNISTLT.name, FashionMNISTLT())
