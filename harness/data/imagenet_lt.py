"""ImageNet-LT (Liu et al. 2019) from its standard split files under an ILSVRC-2012 root.

The split files (ImageNet_LT_train.txt / _val.txt / _test.txt, shipped with facebookresearch's
classifier-balancing) list `<relpath> <label>` with paths relative to the ILSVRC root (test lines point into
val/). The long-tail profile is the split itself (Pareto, 1280..5 per class), so there is no ratio or
selection to choose; its own balanced val split (20 per class, from ILSVRC train) is the validation split.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from harness.core.errors import LtbenchError
from harness.data.base import DATASETS, DataOptions, DatasetSpec, Description, FileSplit, LTData
from harness.data.formats import read_split_file

NATIVE_RATIO = 256.0  # 1280 / 5
SPLITS = ("train", "val", "test")


class ImageNetLT(DatasetSpec):
    name = "imagenet-lt"
    num_classes = 1000
    n_max = 1280
    num_test = 50_000
    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)
    default_model = "resnext50-32x4d"
    default_recipe = "imagenet-lt"
    val_per_class = 20  # the official split's
    fetchable = False
    in_memory = False  # decoded from JPEG files by DataLoader workers
    how_to_get = (
        "Set data.root to the ILSVRC-2012 folder (holding train/ and val/) and put ImageNet_LT_train.txt, "
        "_val.txt and _test.txt (from facebookresearch/classifier-balancing) in it or in its ImageNet_LT/"
    )

    def split_file(self, options: DataOptions, split: str) -> Path:
        name = f"ImageNet_LT_{split}.txt"
        roots = self.candidate_roots(options)
        for root in roots:
            for folder in (root, root / "ImageNet_LT", root / "data" / "ImageNet_LT"):
                if (folder / name).is_file():
                    return folder / name
        raise self.missing(roots, f"no {name}")

    def image_root(self, options: DataOptions) -> Path:
        """The ILSVRC root: the folder holding the split file, or its parent for ImageNet_LT/ layouts."""
        split_dir = self.split_file(options, "train").parent
        for root in (split_dir, split_dir.parent, split_dir.parent.parent):
            if (root / "train").is_dir():
                return root
        raise self.missing([split_dir], "no train/ image folder beside the split files")

    def check_available(self, options: DataOptions) -> list[int] | None:
        for split in SPLITS:  # every line of every split file, the image root and each split's first image
            self.read_split(options, split)
        return None  # the official split files fix the profile and the validation split

    def check_ratio(self, imbalance_ratio: float | None) -> None:
        if imbalance_ratio is not None and float(imbalance_ratio) != NATIVE_RATIO:
            raise LtbenchError(
                f"imagenet-lt's profile is fixed by its split files (ratio {NATIVE_RATIO:g}); "
                f"got imbalance ratio {imbalance_ratio}: leave it out or set it to {NATIVE_RATIO:g}"
            )

    def read_split(self, options: DataOptions, split: str) -> FileSplit:
        path = self.split_file(options, split)
        paths, labels = read_split_file(path)
        if labels.max() >= self.num_classes:
            raise LtbenchError(f"{path}: label {labels.max()} is out of range for {self.num_classes} classes")
        root = self.image_root(options)
        if not (root / paths[0]).is_file():
            raise LtbenchError(
                f"{path} lists {paths[0]} but {root / paths[0]} does not exist; set data.root to the "
                "ILSVRC-2012 folder that holds train/ and val/"
            )
        return FileSplit(root, paths, labels)

    def class_counts(self, imbalance_ratio: float | None, options: DataOptions) -> list[int]:
        self.check_ratio(imbalance_ratio)
        _, labels = read_split_file(self.split_file(options, "train"))
        return np.bincount(labels, minlength=self.num_classes).tolist()

    def validation_size(self, options: DataOptions) -> int:
        if options.val_per_class is not None:
            raise LtbenchError(
                "imagenet-lt keeps its official validation split (ImageNet_LT_val.txt, 20 images per class from "
                "ILSVRC training images outside the LT set); leave data.val_per_class unset"
            )
        return self.val_per_class

    def check_validation(
        self, imbalance_ratio: float | None, options: DataOptions, source_counts: list[int] | None
    ) -> None:
        self.check_ratio(imbalance_ratio)
        self.validation_size(options)  # the official split: only an override can be wrong

    def describe(self, imbalance_ratio: float | None, options: DataOptions) -> Description:
        counts = self.class_counts(imbalance_ratio, options)
        self.validation_size(options)
        val_labels = read_split_file(self.split_file(options, "val"))[1]
        num_test = len(read_split_file(self.split_file(options, "test"))[1])
        per_class = int(np.bincount(val_labels).max())  # 20 in the official split
        return Description(counts, counts, num_test, len(val_labels), per_class, [0] * self.num_classes)

    def build(self, imbalance_ratio: float | None, options: DataOptions) -> LTData:
        self.check_ratio(imbalance_ratio)
        self.validation_size(options)
        train, val, test = (self.read_split(options, s) for s in SPLITS)
        counts = np.bincount(train.labels, minlength=self.num_classes).tolist()
        digests = {s: hashlib.sha256(self.split_file(options, s).read_bytes()).hexdigest() for s in SPLITS}
        return LTData(
            dataset=self.name,
            num_classes=self.num_classes,
            class_counts=counts,
            train=train,
            val=val,
            test=test,
            mean=self.mean,
            std=self.std,
            manifest={"dataset": self.name, "class_counts": counts, "split_file_sha256": digests},
        )


DATASETS.register(ImageNetLT.name, ImageNetLT())
