"""The long-tail profile, image selection, shot buckets and the validation split (docs/protocol.md)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.core.errors import LtbenchError
from harness.data import DATASETS, DataOptions
from harness.data.profile import (
    bucket_of,
    bucket_sizes,
    draw_validation,
    exp_profile,
    select_indices,
    taken_from_lt,
)

RATIOS = (10, 50, 100, 200)


@pytest.mark.parametrize(
    ("dataset", "totals"),
    [
        ("cifar10-lt", (20431, 13996, 12406, 11203)),
        ("cifar100-lt", (19573, 12608, 10847, 9502)),
    ],
)
def test_cifar_lt_totals(dataset, totals):
    spec = DATASETS.get(dataset)
    got = tuple(sum(spec.class_counts(r, DataOptions())) for r in RATIOS)
    assert got == totals
    n_max, num_classes = (5000, 10) if dataset == "cifar10-lt" else (500, 100)
    assert tuple(sum(exp_profile(n_max, num_classes, r)) for r in RATIOS) == totals


def test_cifar10_lt_r100_per_class():
    expected = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert exp_profile(5000, 10, 100) == expected
    assert DATASETS.get("cifar10-lt").class_counts(100, DataOptions()) == expected


def test_exp_profile_truncates_not_rounds():
    # 500 / 200 = 2.5: truncation gives 2 (rounding would give 2 or 3 depending on the rule), so the true
    # max/min of CIFAR-100-LT "r=200" is 250.
    counts = exp_profile(500, 100, 200)
    assert counts[0] == 500
    assert counts[-1] == 2
    # class 1 of CIFAR-10-LT r=100: 5000 * 0.01 ** (1/9) = 2997.7 -> 2997
    assert exp_profile(5000, 10, 100)[1] == 2997
    assert all(isinstance(n, int) for n in counts)
    assert counts == sorted(counts, reverse=True)


def test_fashion_mnist_lt_profile():
    spec = DATASETS.get("fashion-mnist-lt")
    r100 = spec.class_counts(100, DataOptions())
    assert r100 == [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]
    assert sum(r100) == 14886
    assert sum(spec.class_counts(10, DataOptions())) == 24516


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(10, (69, 31, 0)), (50, (41, 41, 18)), (100, (35, 35, 30)), (200, (30, 31, 39))],
)
def test_cifar100_lt_buckets(ratio, expected):
    counts = DATASETS.get("cifar100-lt").class_counts(ratio, DataOptions())
    sizes = bucket_sizes(counts)
    assert (sizes["many"], sizes["medium"], sizes["few"]) == expected


def test_bucket_boundaries():
    assert bucket_of(101) == "many"
    assert bucket_of(100) == "medium"
    assert bucket_of(20) == "medium"
    assert bucket_of(19) == "few"
    assert bucket_sizes([500, 101, 100, 20, 19, 2]) == {"many": 2, "medium": 2, "few": 2}


def test_cifar10_lt_few_bucket_empty_up_to_r100():
    spec = DATASETS.get("cifar10-lt")
    for r in (10, 50, 100):
        assert bucket_sizes(spec.class_counts(r, DataOptions()))["few"] == 0


def test_quick_config_buckets():
    # the quick suite: Fashion-MNIST-LT capped at n_max = 1000, r = 100
    spec = DATASETS.get("fashion-mnist-lt")
    options = DataOptions(max_per_class=1000)
    counts = spec.class_counts(100, options)
    assert counts == [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]
    assert bucket_sizes(counts) == {"many": 5, "medium": 3, "few": 2}
    assert spec.describe(100, options).as_dict()["buckets"] == {"many": 5, "medium": 3, "few": 2}


def test_max_per_class_caps_n_max_only():
    spec = DATASETS.get("cifar10-lt")
    assert spec.class_counts(10, DataOptions(max_per_class=1000))[0] == 1000
    assert spec.class_counts(10, DataOptions(max_per_class=10**6))[0] == 5000
    with pytest.raises(LtbenchError):
        spec.class_counts(10, DataOptions(max_per_class=0))


@pytest.mark.parametrize("ratio", [0.5, 0.99, 0])
def test_ratio_below_one_raises(ratio):
    with pytest.raises(LtbenchError, match="imbalance ratio"):
        exp_profile(5000, 10, ratio)
    with pytest.raises(LtbenchError):
        DATASETS.get("cifar10-lt").class_counts(ratio, DataOptions())


def test_ratio_missing_raises():
    with pytest.raises(LtbenchError):
        DATASETS.get("cifar10-lt").class_counts(None, DataOptions())


def test_ratio_one_is_balanced():
    assert exp_profile(40, 5, 1) == [40] * 5


# -- which images --------------------------------------------------------------------------------------


def _interleaved_labels(num_classes=10, per_class=50, seed=123):
    labels = np.repeat(np.arange(num_classes), per_class)
    np.random.RandomState(seed).shuffle(labels)
    return labels


def _ldam_drw_selection(labels: np.ndarray, counts: list[int], seed: int) -> np.ndarray:
    """LDAM-DRW's IMBALANCECIFAR10: np.random.seed(rand_number), then gen_imbalanced_data."""
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        kept = []
        targets_np = np.array(labels, dtype=np.int64)
        classes = np.unique(targets_np)
        for the_class, the_img_num in zip(classes, counts):  # noqa: B905  (LDAM-DRW's code, verbatim)
            idx = np.where(targets_np == the_class)[0]
            np.random.shuffle(idx)
            kept.append(idx[:the_img_num])
        return np.concatenate(kept)
    finally:
        np.random.set_state(state)


def test_select_first_keeps_file_order():
    labels = _interleaved_labels()
    counts = exp_profile(50, 10, 10)
    idx = select_indices(labels, counts, "first")
    assert idx.dtype == np.int64
    assert np.bincount(labels[idx], minlength=10).tolist() == counts
    for c, n in enumerate(counts):
        assert idx[labels[idx] == c].tolist() == np.flatnonzero(labels == c)[:n].tolist()


@pytest.mark.parametrize("seed", [0, 1, 17])
def test_select_random_matches_ldam_drw(seed):
    labels = _interleaved_labels()
    counts = exp_profile(50, 10, 10)
    idx = select_indices(labels, counts, "random", data_seed=seed)
    np.testing.assert_array_equal(idx, _ldam_drw_selection(labels, counts, seed))


def test_select_random_vs_first():
    labels = _interleaved_labels()
    counts = exp_profile(50, 10, 10)
    first = select_indices(labels, counts, "first")
    rand = select_indices(labels, counts, "random", data_seed=0)
    # same class sizes ...
    assert np.bincount(labels[rand], minlength=10).tolist() == counts
    assert np.bincount(labels[first], minlength=10).tolist() == counts
    # ... different images
    assert set(first.tolist()) != set(rand.tolist())
    # no duplicates
    assert len(set(rand.tolist())) == len(rand)
    # reproducible with data_seed, and the seed matters
    np.testing.assert_array_equal(rand, select_indices(labels, counts, "random", data_seed=0))
    other = select_indices(labels, counts, "random", data_seed=1)
    assert set(other.tolist()) != set(rand.tolist())


def test_select_does_not_touch_global_rng():
    labels = _interleaved_labels()
    np.random.seed(5)
    expected = np.random.rand()
    np.random.seed(5)
    select_indices(labels, exp_profile(50, 10, 10), "random", data_seed=0)
    assert np.random.rand() == expected


def test_select_errors():
    labels = _interleaved_labels(per_class=5)
    with pytest.raises(LtbenchError, match="selection"):
        select_indices(labels, [5] * 10, "middle")
    with pytest.raises(LtbenchError, match="class 0"):
        select_indices(labels, [6] + [5] * 9, "first")


# -- validation split ----------------------------------------------------------------------------------


def test_validation_comes_from_images_outside_the_lt_subset():
    labels = _interleaved_labels(per_class=60)
    counts = exp_profile(50, 10, 10)  # 50 .. 5: every class has at least 10 spare images
    lt_idx = select_indices(labels, counts, "random", data_seed=0)
    split = draw_validation(labels, lt_idx, per_class=8, data_seed=0)
    # class-balanced, disjoint from training, and the training set is exactly the LT subset (the profile)
    assert np.bincount(labels[split.val_idx], minlength=10).tolist() == [8] * 10
    assert not set(split.val_idx.tolist()) & set(lt_idx.tolist())
    assert sorted(split.train_idx.tolist()) == sorted(lt_idx.tolist())
    assert split.taken_from_lt == [0] * 10
    # deterministic, and a different data seed draws a different split
    again = draw_validation(labels, lt_idx, per_class=8, data_seed=0)
    np.testing.assert_array_equal(split.val_idx, again.val_idx)
    other = draw_validation(labels, lt_idx, per_class=8, data_seed=1)
    assert set(other.val_idx.tolist()) != set(split.val_idx.tolist())


def test_a_class_without_enough_spare_images_gives_the_rest_from_its_lt_images():
    labels = _interleaved_labels(per_class=50)
    counts = exp_profile(50, 10, 10)  # the head class keeps all 50: no spare image
    lt_idx = select_indices(labels, counts, "first")
    split = draw_validation(labels, lt_idx, per_class=5, data_seed=0)
    assert split.taken_from_lt == [5] + [0] * 9
    assert split.train_counts(counts) == [45, *counts[1:]]
    assert np.bincount(labels[split.train_idx], minlength=10).tolist() == [45, *counts[1:]]
    assert np.bincount(labels[split.val_idx], minlength=10).tolist() == [5] * 10
    assert not set(split.val_idx.tolist()) & set(split.train_idx.tolist())
    # the arithmetic that `data describe` uses agrees with the draw
    assert taken_from_lt(counts, [50] * 10, 5) == split.taken_from_lt


def test_validation_too_large_for_a_class_is_an_error():
    labels = _interleaved_labels(per_class=10)
    lt_idx = select_indices(labels, [10] * 10, "first")
    with pytest.raises(LtbenchError, match="val_per_class"):
        draw_validation(labels, lt_idx, per_class=10, data_seed=0)
    with pytest.raises(LtbenchError, match="val_per_class"):
        taken_from_lt([10] * 10, [10] * 10, 10)


def test_validation_independent_of_global_rng():
    labels = _interleaved_labels(per_class=30)
    lt_idx = select_indices(labels, [20] * 10, "first")
    np.random.seed(1)
    a = draw_validation(labels, lt_idx, 4, data_seed=3).val_idx
    np.random.seed(2)
    b = draw_validation(labels, lt_idx, 4, data_seed=3).val_idx
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("dataset", "totals"),
    [
        ("cifar10-lt", (20431, 13996, 12406, 11203)),
        ("cifar100-lt", (19573, 12608, 10847, 9502)),
    ],
)
def test_describe_keeps_the_published_profile(dataset, totals):
    spec = DATASETS.get(dataset)
    for ratio, total in zip(RATIOS, totals, strict=True):
        d = spec.describe(ratio, DataOptions()).as_dict()
        assert d["num_profile"] == total
        # only classes with fewer than k spare source images give validation images from their LT images: the
        # head class (all n_max selected) and, for CIFAR-100-LT r=10, class 1 (488 of 500 selected)
        k = d["val_per_class"]
        expected = {str(c): k - (spec.n_max - n) for c, n in enumerate(d["class_counts"]) if spec.n_max - n < k}
        assert d["val_from_lt"] == expected and "0" in expected
        assert len(expected) == (2 if (dataset, ratio) == ("cifar100-lt", 10) else 1)
        assert d["num_train"] == total - sum(expected.values())


def test_describe_counts_validation():
    d = DATASETS.get("cifar100-lt").describe(100, DataOptions()).as_dict()
    assert d["class_counts"][-1] == 5  # the tail class keeps its 5 images
    assert d["train_counts"][-1] == 5
    assert (d["val_per_class"], d["num_val"]) == (20, 2000)
    assert d["num_test"] == 10_000
    assert d["buckets"] == {"many": 35, "medium": 35, "few": 30}
    d10 = DATASETS.get("cifar10-lt").describe(100, DataOptions()).as_dict()
    assert (d10["val_per_class"], d10["num_val"]) == (100, 1000)
    assert d10["class_counts"][-1] == d10["train_counts"][-1] == 50
    capped = DATASETS.get("fashion-mnist-lt").describe(100, DataOptions(max_per_class=1000)).as_dict()
    assert capped["val_from_lt"] == {} and capped["train_counts"] == capped["class_counts"]
    assert DATASETS.get("cifar10-lt").describe(100, DataOptions(val_per_class=7)).as_dict()["num_val"] == 70
