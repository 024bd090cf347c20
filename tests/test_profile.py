"""The long-tail profile, image selection, shot buckets and validation carve (SPEC.md section 1)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.data import DATASETS, DataOptions
from harness.data.profile import (
    ValidationCarve,
    bucket_of,
    bucket_sizes,
    carve_validation,
    exp_profile,
    select_indices,
)
from harness.errors import LtbenchError

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


# -- validation carve ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "k"),
    [
        ([500, 50], 10),  # floor(0.2 * 50)
        ([5000, 500], 20),  # capped at max_per_class
        ([100, 3], 1),  # floor(0.6) = 0 -> at least 1
        ([100, 2], 1),  # at most n_min - 1: one image stays in train
        ([100, 7], 1),
        ([100, 10], 2),
    ],
)
def test_validation_carve_per_class(counts, k):
    assert ValidationCarve(0.2, 20).per_class(counts) == k


def test_validation_carve_custom_fraction_and_cap():
    assert ValidationCarve(0.5, 3).per_class([100, 10]) == 3
    assert ValidationCarve(0.5, 100).per_class([100, 10]) == 5
    assert ValidationCarve(0.9, 100).per_class([100, 10]) == 9


def test_validation_carve_needs_two_images():
    with pytest.raises(LtbenchError):
        ValidationCarve().per_class([100, 1])


def test_carve_validation_balanced_disjoint_deterministic():
    labels = _interleaved_labels(per_class=50)
    counts = exp_profile(50, 10, 10)  # 50 .. 5
    lt_idx = select_indices(labels, counts, "random", data_seed=0)
    k = ValidationCarve().per_class(counts)
    assert k == 1
    k = 3
    train, val = carve_validation(lt_idx, labels, k, data_seed=0)
    # class-balanced: k of every class
    assert np.bincount(labels[val], minlength=10).tolist() == [k] * 10
    assert np.bincount(labels[train], minlength=10).tolist() == [n - k for n in counts]
    # disjoint, and together exactly the LT subset
    assert not set(train.tolist()) & set(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == sorted(lt_idx.tolist())
    # deterministic
    train2, val2 = carve_validation(lt_idx, labels, k, data_seed=0)
    np.testing.assert_array_equal(train, train2)
    np.testing.assert_array_equal(val, val2)
    # a different data seed draws a different split (the 50-image class alone has C(50,3) choices)
    _, val3 = carve_validation(lt_idx, labels, k, data_seed=1)
    assert set(val3.tolist()) != set(val.tolist())


def test_carve_validation_independent_of_global_rng():
    labels = _interleaved_labels(per_class=20)
    lt_idx = select_indices(labels, [20] * 10, "first")
    np.random.seed(1)
    _, a = carve_validation(lt_idx, labels, 4, data_seed=3)
    np.random.seed(2)
    _, b = carve_validation(lt_idx, labels, 4, data_seed=3)
    np.testing.assert_array_equal(a, b)


def test_describe_counts_validation():
    spec = DATASETS.get("cifar100-lt")
    d = spec.describe(100, DataOptions()).as_dict()
    assert d["num_train"] == 10847
    assert d["num_val"] == 100 * 1  # n_min = 5 -> k = 1
    assert d["num_test"] == 10_000
    assert d["buckets"] == {"many": 35, "medium": 35, "few": 30}
    d10 = DATASETS.get("cifar10-lt").describe(10, DataOptions()).as_dict()
    assert d10["num_val"] == 10 * 20  # n_min = 500 -> min(100, 20)
