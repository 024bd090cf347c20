"""Each dataset loader on fake files in the real on-disk formats, and its error messages."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest

from harness.core.errors import LtbenchError
from harness.data import DATASETS, DataOptions
from harness.data.base import ArraySplit, FileSplit
from harness.data.formats import read_idx, read_split_file
from harness.data.profile import exp_profile, select_indices
from tests import fakes

# -- CIFAR -----------------------------------------------------------------------------------------------


def _check_array_build(data, written: fakes.FakeArrays, options, ratio, num_classes, n_max, k):
    """Shared checks of an in-memory LT build against what the fake wrote."""
    counts = exp_profile(n_max, num_classes, ratio)
    source = np.bincount(written.train_labels, minlength=num_classes)
    assert data.class_counts == counts
    assert data.num_classes == num_classes
    for split in (data.train, data.val, data.test):
        assert isinstance(split, ArraySplit)
        assert split.images.dtype == np.uint8
        assert split.labels.dtype == np.int64
        assert len(split.images) == len(split.labels)
    # a balanced validation split of k per class, drawn from spare source images; a class with fewer than k
    # spare images gives the rest from its LT images, and only it trains on fewer than its profile count
    taken = [max(0, k - (int(source[c]) - n)) for c, n in enumerate(counts)]
    assert np.bincount(data.val.labels, minlength=num_classes).tolist() == [k] * num_classes
    assert data.train_counts == [n - t for n, t in zip(counts, taken, strict=True)]
    assert data.manifest["val_from_lt"] == taken
    # the full balanced test set, in file order
    np.testing.assert_array_equal(data.test.labels, written.test_labels)
    # which source images: training is exactly the selected LT subset less what validation took from it
    train_idx = np.asarray(data.manifest["train_indices"])
    val_idx = np.asarray(data.manifest["val_indices"])
    expected = set(select_indices(written.train_labels, counts, options.selection, options.data_seed).tolist())
    assert not set(train_idx.tolist()) & set(val_idx.tolist())
    assert set(train_idx.tolist()) <= expected
    assert len(expected - set(train_idx.tolist())) == sum(taken) == len(set(val_idx.tolist()) & expected)
    np.testing.assert_array_equal(data.train.labels, written.train_labels[train_idx])
    np.testing.assert_array_equal(data.val.labels, written.train_labels[val_idx])
    return train_idx, val_idx


def _cifar_image(row: np.ndarray) -> np.ndarray:
    """One CIFAR row (3072 bytes: 1024 red, 1024 green, 1024 blue, each row-major 32x32) as CHW."""
    chw = np.empty((3, 32, 32), dtype=np.uint8)
    for c in range(3):
        for y in range(32):
            chw[c, y, :] = row[c * 1024 + y * 32 : c * 1024 + y * 32 + 32]
    return chw


@pytest.mark.parametrize("selection", ["random", "first"])
def test_cifar10_lt_build(tmp_path, selection):
    written = fakes.write_cifar10(tmp_path, per_class=34, test_per_class=2)
    options = DataOptions(root=str(tmp_path), max_per_class=30, selection=selection, val_per_class=6)
    data = DATASETS.get("cifar10-lt").build(10, options)
    assert data.dataset == "cifar10-lt"
    # n_max 30 of 34 source images: the head class has 4 spare images and gives 2 of its 6 from its LT images
    train_idx, val_idx = _check_array_build(data, written, options, 10, 10, 30, k=6)
    assert data.manifest["val_from_lt"] == [2] + [0] * 9
    assert data.train.images.shape == (sum(exp_profile(30, 10, 10)) - 2, 3, 32, 32)
    assert data.test.images.shape == (20, 3, 32, 32)
    # pixels round-trip exactly in CHW layout (train, val and test)
    for j in (0, 7, len(train_idx) - 1):
        np.testing.assert_array_equal(data.train.images[j], _cifar_image(written.train_images[train_idx[j]]))
    np.testing.assert_array_equal(data.val.images[3], _cifar_image(written.train_images[val_idx[3]]))
    np.testing.assert_array_equal(data.test.images[5], _cifar_image(written.test_images[5]))
    # spot-check the layout itself: (c=1, y=0, x=0) is byte 1024, (c=0, y=1, x=2) is byte 34
    row = written.test_images[5]
    assert data.test.images[5, 1, 0, 0] == row[1024]
    assert data.test.images[5, 0, 1, 2] == row[34]


def test_cifar10_lt_images_span_all_batches(tmp_path):
    written = fakes.write_cifar10(tmp_path, per_class=30)
    data = DATASETS.get("cifar10-lt").build(1, DataOptions(root=str(tmp_path), max_per_class=30, val_per_class=3))
    # ratio 1 keeps every image: all five batches were read, in order
    all_idx = sorted(data.manifest["train_indices"] + data.manifest["val_indices"])
    assert all_idx == list(range(300))
    order = np.argsort(np.asarray(data.manifest["train_indices"] + data.manifest["val_indices"]))
    images = np.concatenate([data.train.images, data.val.images])[order]
    np.testing.assert_array_equal(images.reshape(300, 3072), written.train_images)


def test_cifar10_lt_build_deterministic_and_seeded(tmp_path):
    fakes.write_cifar10(tmp_path, per_class=30)
    spec = DATASETS.get("cifar10-lt")
    a = spec.build(10, DataOptions(root=str(tmp_path), max_per_class=30, data_seed=0, val_per_class=3))
    b = spec.build(10, DataOptions(root=str(tmp_path), max_per_class=30, data_seed=0, val_per_class=3))
    c = spec.build(10, DataOptions(root=str(tmp_path), max_per_class=30, data_seed=1, val_per_class=3))
    assert a.manifest == b.manifest
    np.testing.assert_array_equal(a.train.images, b.train.images)
    assert a.manifest["train_indices"] != c.manifest["train_indices"]
    assert a.class_counts == c.class_counts


def test_cifar100_lt_build(tmp_path):
    written = fakes.write_cifar100(tmp_path, per_class=10, test_per_class=1)
    options = DataOptions(root=str(tmp_path), max_per_class=10, data_seed=3, val_per_class=1)
    data = DATASETS.get("cifar100-lt").build(2, options)
    assert data.dataset == "cifar100-lt"
    train_idx, _ = _check_array_build(data, written, options, 2, 100, 10, k=1)
    assert data.train.images.shape[1:] == (3, 32, 32)
    assert data.test.images.shape == (100, 3, 32, 32)
    for j in (0, 123, len(train_idx) - 1):
        np.testing.assert_array_equal(data.train.images[j], _cifar_image(written.train_images[train_idx[j]]))
    np.testing.assert_array_equal(data.test.images[42], _cifar_image(written.test_images[42]))


def test_cifar100_reads_fine_labels_not_coarse(tmp_path):
    written = fakes.write_cifar100(tmp_path, per_class=10)
    data = DATASETS.get("cifar100-lt").build(1, DataOptions(root=str(tmp_path), max_per_class=10, val_per_class=1))
    assert data.test.labels.max() == 99
    np.testing.assert_array_equal(data.test.labels, written.test_labels)


@pytest.mark.parametrize(
    ("dataset", "folder"), [("cifar10-lt", "cifar-10-batches-py"), ("cifar100-lt", "cifar-100-python")]
)
def test_cifar_missing_folder(tmp_path, dataset, folder):
    with pytest.raises(LtbenchError) as e:
        DATASETS.get(dataset).build(10, DataOptions(root=str(tmp_path)))
    message = str(e.value)
    assert folder in message
    assert str(tmp_path) in message
    assert "download" in message


def test_cifar_missing_batch_file(tmp_path):
    fakes.write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(LtbenchError, match="data_batch_4"):
        DATASETS.get("cifar10-lt").build(10, DataOptions(root=str(tmp_path), max_per_class=30))


def test_cifar_corrupt_batch(tmp_path):
    fakes.write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(LtbenchError, match="test_batch"):
        DATASETS.get("cifar10-lt").build(10, DataOptions(root=str(tmp_path), max_per_class=30))


def test_cifar_wrong_row_width(tmp_path):
    fakes.write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    with open(path, "wb") as f:
        pickle.dump({"data": np.zeros((4, 1024), np.uint8), "labels": [0, 1, 2, 3]}, f, protocol=2)
    with pytest.raises(LtbenchError, match="3072"):
        DATASETS.get("cifar10-lt").build(10, DataOptions(root=str(tmp_path), max_per_class=30))


def test_cifar_too_few_images_for_profile(tmp_path):
    fakes.write_cifar10(tmp_path, per_class=30)
    with pytest.raises(LtbenchError, match="profile"):
        DATASETS.get("cifar10-lt").build(10, DataOptions(root=str(tmp_path), max_per_class=40))


# -- Fashion-MNIST ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_lt_build(tmp_path, gz):
    written = fakes.write_fashion_mnist(tmp_path, per_class=12, test_per_class=2, gz=gz)
    suffix = ".gz" if gz else ""
    assert (tmp_path / f"train-images-idx3-ubyte{suffix}").is_file()
    options = DataOptions(root=str(tmp_path), max_per_class=12, val_per_class=1)
    data = DATASETS.get("fashion-mnist-lt").build(4, options)
    # n_max 12 of 12 source images: the head class gives its one validation image from its LT images
    train_idx, val_idx = _check_array_build(data, written, options, 4, 10, 12, k=1)
    assert data.train.images.shape == (sum(exp_profile(12, 10, 4)) - 1, 1, 28, 28)
    assert data.test.images.shape == (20, 1, 28, 28)
    for j in (0, 11, len(train_idx) - 1):
        np.testing.assert_array_equal(data.train.images[j, 0], written.train_images[train_idx[j]])
    np.testing.assert_array_equal(data.val.images[2, 0], written.train_images[val_idx[2]])
    np.testing.assert_array_equal(data.test.images[:, 0], written.test_images)


def test_fashion_mnist_torchvision_layout(tmp_path):
    written = fakes.write_fashion_mnist(tmp_path / "FashionMNIST" / "raw", gz=True)
    data = DATASETS.get("fashion-mnist-lt").build(4, DataOptions(root=str(tmp_path), max_per_class=12, val_per_class=1))
    np.testing.assert_array_equal(data.test.labels, written.test_labels)


def test_read_idx_raw_and_gz_agree(tmp_path):
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, size=(5, 28, 28)).astype(np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    raw = fakes.write_idx(tmp_path / "img", images)
    gz = fakes.write_idx(tmp_path / "img", images, gz=True)
    assert raw.read_bytes()[:4] == b"\x00\x00\x08\x03"
    assert gzip.decompress(gz.read_bytes()) == raw.read_bytes()
    for path in (raw, gz):
        out = read_idx(path)
        assert out.shape == (5, 28, 28)
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out, images)
    lab = fakes.write_idx(tmp_path / "lab", labels)
    assert lab.read_bytes()[:8] == b"\x00\x00\x08\x01\x00\x00\x00\x05"
    np.testing.assert_array_equal(read_idx(lab), labels)


def test_read_idx_big_endian_int32(tmp_path):
    values = np.array([1, -2, 70000], dtype=">i4")
    path = tmp_path / "ints"
    path.write_bytes(struct.pack(">I", 0x00000C01) + struct.pack(">I", 3) + values.tobytes())
    np.testing.assert_array_equal(read_idx(path), [1, -2, 70000])


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_truncated_idx(tmp_path, gz):
    fakes.write_fashion_mnist(tmp_path, gz=gz)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    path = tmp_path / name
    raw = fakes.idx_bytes(np.zeros((120, 28, 28), np.uint8))[:-100]  # data shorter than the header says
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(LtbenchError, match="truncated or corrupt") as e:
        DATASETS.get("fashion-mnist-lt").build(4, DataOptions(root=str(tmp_path), max_per_class=12, val_per_class=1))
    assert name in str(e.value)


def test_fashion_mnist_truncated_gzip_stream(tmp_path):
    fakes.write_fashion_mnist(tmp_path, gz=True)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(LtbenchError, match="t10k-labels-idx1-ubyte.gz"):
        DATASETS.get("fashion-mnist-lt").build(4, DataOptions(root=str(tmp_path), max_per_class=12, val_per_class=1))


def test_read_idx_bad_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x01\x02\x08\x03" + bytes(64))
    with pytest.raises(LtbenchError, match="magic"):
        read_idx(path)
    path.write_bytes(b"PK")
    with pytest.raises(LtbenchError):
        read_idx(path)


def test_read_idx_trailing_bytes(tmp_path):
    path = tmp_path / "long"
    path.write_bytes(fakes.idx_bytes(np.zeros(10, np.uint8)) + b"\x00")
    with pytest.raises(LtbenchError, match="truncated or corrupt"):
        read_idx(path)


def test_read_idx_truncated_header(tmp_path):
    path = tmp_path / "short"
    path.write_bytes(fakes.idx_bytes(np.zeros((2, 28, 28), np.uint8))[:10])  # magic + 1.5 of 3 dims
    with pytest.raises(LtbenchError):
        read_idx(path)


def test_read_idx_corrupt_gzip_stream(tmp_path):
    path = tmp_path / "img.gz"
    images = (np.arange(2 * 784) % 251).astype(np.uint8).reshape(2, 28, 28)
    data = bytearray(gzip.compress(fakes.idx_bytes(images)))
    for i in range(20, len(data) - 8):  # keep the 10-byte gzip header and the trailer, scramble the rest
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    with pytest.raises(LtbenchError):
        read_idx(path)


def test_fashion_mnist_inconsistent_files(tmp_path):
    fakes.write_fashion_mnist(tmp_path, per_class=12)
    fakes.write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(7, np.uint8))
    with pytest.raises(LtbenchError, match="do not match"):
        DATASETS.get("fashion-mnist-lt").build(4, DataOptions(root=str(tmp_path), max_per_class=12, val_per_class=1))


def test_fashion_mnist_missing_files(tmp_path):
    fakes.write_fashion_mnist(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(LtbenchError) as e:
        DATASETS.get("fashion-mnist-lt").build(100, DataOptions(root=str(tmp_path)))
    message = str(e.value)
    assert "not found" in message
    assert str(tmp_path) in message
    assert "dataset-fashion-mnist" in message  # where to get them


# -- ImageNet-LT -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("split_subdir", [None, "ImageNet_LT"])
def test_imagenet_lt_build(tmp_path, split_subdir):
    fake = fakes.write_imagenet_lt(tmp_path, train_counts=(6, 4, 3, 2, 1), split_subdir=split_subdir)
    options = DataOptions(root=str(tmp_path))
    spec = DATASETS.get("imagenet-lt")
    data = spec.build(None, options)
    assert data.dataset == "imagenet-lt"
    assert data.num_classes == 1000
    assert data.class_counts == [6, 4, 3, 2, 1] + [0] * 995
    for split in ("train", "val", "test"):
        got = getattr(data, split)
        paths, labels = fake.splits[split]
        assert isinstance(got, FileSplit)
        assert got.root == tmp_path
        assert got.paths == paths
        assert got.labels.dtype == np.int64
        assert got.labels.tolist() == labels
        assert all((got.root / p).is_file() for p in got.paths)
    assert len(data.train) == 16
    assert len(data.val) == 10
    assert len(data.test) == 10
    assert all(p.startswith("train/") for p in data.val.paths)
    assert all(p.startswith("val/") for p in data.test.paths)
    assert set(data.manifest["split_file_sha256"]) == {"train", "val", "test"}
    # the native ratio is accepted too
    assert spec.build(256, options).class_counts == data.class_counts


def test_imagenet_lt_images_decode(tmp_path):
    from PIL import Image

    fake = fakes.write_imagenet_lt(tmp_path)
    data = DATASETS.get("imagenet-lt").build(None, DataOptions(root=str(tmp_path)))
    for split in (data.train, data.test):
        with Image.open(split.root / split.paths[-1]) as img:
            assert img.format == "JPEG"
            assert img.size == (12, 10)
    assert fake.splits["test"][0][0] == "val/ILSVRC2012_val_00000001.JPEG"


def test_imagenet_lt_describe(tmp_path):
    fakes.write_imagenet_lt(tmp_path, train_counts=(150, 30, 5), val_per_class=1, test_per_class=1)
    d = DATASETS.get("imagenet-lt").describe(None, DataOptions(root=str(tmp_path))).as_dict()
    assert d["class_counts"][:3] == [150, 30, 5]
    assert len(d["class_counts"]) == 1000
    assert d["num_train"] == 185
    assert d["num_val"] == 3
    assert d["num_test"] == 3
    assert d["buckets"]["many"] == 1
    assert d["buckets"]["medium"] == 1


@pytest.mark.parametrize("ratio", [100, 10, 200])
def test_imagenet_lt_rejects_ratio(tmp_path, ratio):
    fakes.write_imagenet_lt(tmp_path)
    spec = DATASETS.get("imagenet-lt")
    with pytest.raises(LtbenchError, match="ratio"):
        spec.build(ratio, DataOptions(root=str(tmp_path)))
    with pytest.raises(LtbenchError, match="ratio"):
        spec.describe(ratio, DataOptions(root=str(tmp_path)))


def test_imagenet_lt_missing_split_files(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(LtbenchError) as e:
        DATASETS.get("imagenet-lt").build(None, DataOptions(root=str(tmp_path)))
    message = str(e.value)
    assert "ImageNet_LT_train.txt" in message
    assert str(tmp_path) in message
    assert "classifier-balancing" in message


def test_imagenet_lt_missing_test_split(tmp_path):
    fake = fakes.write_imagenet_lt(tmp_path)
    fake.split_file("test").unlink()
    with pytest.raises(LtbenchError, match="ImageNet_LT_test.txt"):
        DATASETS.get("imagenet-lt").build(None, DataOptions(root=str(tmp_path)))


def test_imagenet_lt_missing_images(tmp_path):
    fake = fakes.write_imagenet_lt(tmp_path / "splits_only")
    # split files present, but the root has no images where they point
    (tmp_path / "elsewhere" / "train").mkdir(parents=True)
    for split in ("train", "val", "test"):
        (tmp_path / "elsewhere" / f"ImageNet_LT_{split}.txt").write_bytes(fake.split_file(split).read_bytes())
    with pytest.raises(LtbenchError, match="does not exist"):
        DATASETS.get("imagenet-lt").build(None, DataOptions(root=str(tmp_path / "elsewhere")))


@pytest.mark.parametrize(
    "bad_line",
    [
        "train/n01440764/n01440764_1000.JPEG",  # no label
        "train/n01440764/n01440764_1000.JPEG zero",  # not an integer
        "train/n01440764/n01440764_1000.JPEG -1",  # negative
        "train/n01440764/n01440764_1000.JPEG 0 extra",  # too many fields
    ],
)
def test_imagenet_lt_malformed_line(tmp_path, bad_line):
    fake = fakes.write_imagenet_lt(tmp_path)
    path = fake.split_file("train")
    lines = path.read_text().splitlines()
    lines.insert(2, bad_line)  # becomes line 3
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LtbenchError) as e:
        DATASETS.get("imagenet-lt").build(None, DataOptions(root=str(tmp_path)))
    message = str(e.value)
    assert f"{path}:3:" in message
    assert bad_line in message


def test_read_split_file_skips_blank_lines_but_counts_them(tmp_path):
    path = tmp_path / "ImageNet_LT_val.txt"
    path.write_text("train/a/a_1.JPEG 0\n\ntrain/b/b_1.JPEG 1\nbroken\n")
    with pytest.raises(LtbenchError, match=r"ImageNet_LT_val\.txt:4:"):
        read_split_file(path)
    path.write_text("train/a/a_1.JPEG 0\n\ntrain/b/b_1.JPEG 12\n")
    paths, labels = read_split_file(path)
    assert paths == ["train/a/a_1.JPEG", "train/b/b_1.JPEG"]
    assert labels.tolist() == [0, 12]
    assert labels.dtype == np.int64


def test_read_split_file_empty(tmp_path):
    path = tmp_path / "ImageNet_LT_test.txt"
    path.write_text("\n\n")
    with pytest.raises(LtbenchError, match="no samples"):
        read_split_file(path)


def test_imagenet_lt_label_out_of_range(tmp_path):
    fake = fakes.write_imagenet_lt(tmp_path)
    paths, labels = fake.splits["val"]
    fakes.write_split_file(fake.split_file("val"), paths, [1000] + labels[1:])
    with pytest.raises(LtbenchError, match="out of range"):
        DATASETS.get("imagenet-lt").build(None, DataOptions(root=str(tmp_path)))


def test_cifar100_lt_r100_keeps_the_published_profile_on_full_size_files(tmp_path):
    """Full-size fake CIFAR-100 files (500 per class): the LT subset is exactly the published r=100 profile
    (10,847 images, a tail class of 5), validation is 20 per class drawn beside it, and only the head class,
    which keeps all 500 of its images, gives its 20 from its own LT images."""
    written = fakes.write_cifar100(tmp_path, per_class=500, test_per_class=1)
    data = DATASETS.get("cifar100-lt").build(100, DataOptions(root=str(tmp_path)))
    assert sum(data.class_counts) == 10847
    assert data.train_counts[-1] == data.class_counts[-1] == 5
    assert data.train_counts == [480] + data.class_counts[1:]
    assert len(data.train) == 10847 - 20 and len(data.val) == 2000
    lt = set(select_indices(written.train_labels, data.class_counts, "random", 0).tolist())
    train, val = set(data.manifest["train_indices"]), set(data.manifest["val_indices"])
    assert not train & val and train | (val & lt) == lt
    assert {int(written.train_labels[i]) for i in val & lt} == {0}
