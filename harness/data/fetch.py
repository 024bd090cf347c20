"""`ltbench data fetch DATASET`: get a dataset's files onto this machine if they are missing.

Fashion-MNIST: Debian's `dataset-fashion-mnist` when apt works as root, else torchvision's download into
./data, else a message saying how. CIFAR: torchvision's download into ./data (needs the internet).
ImageNet-LT cannot be fetched automatically (ILSVRC-2012 needs a licence): the message says what to put where.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from harness.core.errors import LtbenchError
from harness.data.base import DATASETS, DataOptions

DEBIAN_PACKAGE = "dataset-fashion-mnist"


def _apt_install(package: str) -> bool:
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", package]
    # try the package lists as they are, then refreshed ones
    for attempt in (install, ["apt-get", "update", "-q"], install):
        done = subprocess.run(attempt, capture_output=True, text=True, env=env)
        if done.returncode == 0 and attempt is install:
            return True
    return False


def fetch(dataset: str, root: str | None = None) -> Path:
    """Make the dataset's files present and return where they are."""
    spec = DATASETS.get(dataset)
    options = DataOptions(root=root)
    locate = getattr(spec, "locate", None)
    if locate is None:  # ImageNet-LT
        spec.split_file(options, "train")  # raises with instructions when missing
        return spec.image_root(options)
    found = locate(options)
    if found is not None:
        return found
    if dataset == "fashion-mnist-lt" and root is None and _apt_install(DEBIAN_PACKAGE):
        found = locate(options)
        if found is not None:
            return found
    try:
        spec.read_arrays(DataOptions(root=root, download=True))
    except Exception as e:  # offline: torchvision raises URLError/RuntimeError
        if isinstance(e, LtbenchError):
            raise
        raise LtbenchError(f"{dataset}: could not download ({str(e).splitlines()[0]}). {spec.how_to_get}") from e
    found = locate(options)
    if found is None:
        raise spec.missing(spec.candidate_roots(options))
    return found
