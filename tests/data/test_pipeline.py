"""The batch augmentation and the training samplers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.data.base import ArraySplit
from harness.data.pipeline import TensorBatches, random_crop_flip
from harness.data.samplers import SAMPLERS, ClassPowerSampler, InstanceSampler, make_sampler


def _images(b=32, c=3, h=8, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    # values 1..255 so that the zero padding is distinguishable from image content
    return torch.randint(1, 256, (b, c, h, w), generator=g, dtype=torch.uint8)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# -- random_crop_flip --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("pad", "flip"), [(4, True), (4, False), (0, True), (2, True)])
def test_crop_flip_shape_and_dtype(pad, flip):
    images = _images(b=5, c=3, h=32, w=32)
    out = random_crop_flip(images, pad, flip, _gen())
    assert out.shape == (5, 3, 32, 32)
    assert out.dtype == torch.uint8


def test_crop_flip_identity_without_pad_and_flip():
    images = _images()
    out = random_crop_flip(images, 0, False, _gen())
    assert torch.equal(out, images)


def _crops(padded: torch.Tensor, pad: int, h: int, w: int) -> list[tuple[int, int, torch.Tensor]]:
    return [(dy, dx, padded[:, dy : dy + h, dx : dx + w]) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]


def test_crop_is_a_crop_of_the_padded_image():
    pad, h, w = 4, 8, 8
    images = _images(b=64, c=3, h=h, w=w)
    out = random_crop_flip(images, pad, False, _gen(1))
    offsets = set()
    for i in range(len(images)):
        padded = torch.nn.functional.pad(images[i], (pad, pad, pad, pad))
        matches = [(dy, dx) for dy, dx, crop in _crops(padded, pad, h, w) if torch.equal(out[i], crop)]
        assert len(matches) == 1, f"image {i} is not a crop of its padded input"
        offsets.add(matches[0])
    # the offsets are random, not always the centre crop
    assert len(offsets) > 10


def test_crop_flip_is_a_crop_or_mirrored_crop():
    pad, h, w = 2, 6, 6
    images = _images(b=64, c=2, h=h, w=w, seed=3)
    out = random_crop_flip(images, pad, True, _gen(2))
    flipped = 0
    for i in range(len(images)):
        padded = torch.nn.functional.pad(images[i], (pad, pad, pad, pad))
        crops = [crop for _, _, crop in _crops(padded, pad, h, w)]
        plain = any(torch.equal(out[i], crop) for crop in crops)
        mirrored = any(torch.equal(out[i], crop.flip(2)) for crop in crops)
        assert plain or mirrored, f"image {i} is neither a crop nor a mirrored crop"
        flipped += int(mirrored and not plain)
    # about half are mirrored (binomial(64, 0.5): 16..48 is far beyond 4 sigma)
    assert 16 <= flipped <= 48


def test_flip_only():
    images = _images(b=200)
    out = random_crop_flip(images, 0, True, _gen(4))
    same = torch.tensor([torch.equal(out[i], images[i]) for i in range(len(images))])
    mirrored = torch.tensor([torch.equal(out[i], images[i].flip(2)) for i in range(len(images))])
    assert bool((same | mirrored).all())
    assert 60 <= int(mirrored.sum()) <= 140


def test_each_image_gets_its_own_draw():
    # the same image repeated: different crops within one batch
    images = _images(b=1, h=8, w=8).repeat(32, 1, 1, 1)
    out = random_crop_flip(images, 4, False, _gen(5))
    distinct = {out[i].numpy().tobytes() for i in range(len(out))}
    assert len(distinct) > 5


def test_crop_flip_reproducible_with_seed():
    images = _images(b=16, h=32, w=32)
    a = random_crop_flip(images, 4, True, _gen(7))
    b = random_crop_flip(images, 4, True, _gen(7))
    c = random_crop_flip(images, 4, True, _gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_crop_flip_does_not_modify_input():
    images = _images(b=8)
    copy = images.clone()
    random_crop_flip(images, 4, True, _gen())
    assert torch.equal(images, copy)


# -- samplers ----------------------------------------------------------------------------------------------

COUNTS = [4000, 1000, 250, 50]


def _labels(counts=COUNTS, seed=0):
    labels = np.repeat(np.arange(len(counts)), counts)
    np.random.RandomState(seed).shuffle(labels)
    return labels


def _expected_p(counts, q):
    w = np.asarray(counts, dtype=float) ** q
    return w / w.sum()


@pytest.mark.parametrize("q", [1.0, 0.5, 0.0])
def test_class_power_sampler_frequencies(q):
    labels = _labels()
    sampler = ClassPowerSampler(labels, 4, 128, q)
    expected = _expected_p(COUNTS, q)
    np.testing.assert_allclose(sampler.class_probabilities(0, 10).numpy(), expected, rtol=1e-12)
    g = _gen(11)
    draws = torch.cat([sampler.epoch_indices(e, 20, g) for e in range(20)])  # 20 x 5300 = 106,000 draws
    assert draws.dtype == torch.int64
    assert len(draws) == 20 * len(labels)
    assert int(draws.min()) >= 0
    assert int(draws.max()) < len(labels)
    freq = np.bincount(labels[draws.numpy()], minlength=4) / len(draws)
    # binomial standard error is at most 0.0016 here; 0.006 is > 3.5 sigma
    np.testing.assert_allclose(freq, expected, atol=0.006)


def test_class_power_sampler_uniform_within_class():
    labels = _labels()
    sampler = ClassPowerSampler(labels, 4, 128, 0.0)
    g = _gen(12)
    draws = torch.cat([sampler.epoch_indices(e, 10, g) for e in range(10)]).numpy()
    tail = np.flatnonzero(labels == 3)  # 50 images, each should get ~1/50 of the ~13,250 tail draws
    hits = np.bincount(draws, minlength=len(labels))[tail]
    assert hits.min() > 0.5 * hits.mean()
    assert hits.max() < 1.5 * hits.mean()


def test_class_power_sampler_absent_class():
    labels = np.array([0] * 30 + [2] * 10)
    sampler = ClassPowerSampler(labels, 4, 128, 0.0)
    p = sampler.class_probabilities(0, 1).numpy()
    np.testing.assert_allclose(p, [0.5, 0.0, 0.5, 0.0])
    draws = sampler.epoch_indices(0, 1, _gen())
    assert set(labels[draws.numpy()].tolist()) <= {0, 2}


def test_registered_samplers_use_kang_q():
    labels = _labels()
    assert isinstance(make_sampler("instance", labels, 4, 128), InstanceSampler)
    for name, q in (("square-root", 0.5), ("class-balanced", 0.0)):
        sampler = make_sampler(name, labels, 4, 128)
        assert isinstance(sampler, ClassPowerSampler)
        np.testing.assert_allclose(sampler.class_probabilities(0, 1).numpy(), _expected_p(COUNTS, q))
    assert {"instance", "square-root", "class-balanced"} <= set(SAMPLERS.names())


def test_class_power_sampler_reproducible():
    labels = _labels()
    sampler = ClassPowerSampler(labels, 4, 128, 0.5)
    a = sampler.epoch_indices(0, 1, _gen(3))
    b = sampler.epoch_indices(0, 1, _gen(3))
    c = sampler.epoch_indices(0, 1, _gen(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_instance_sampler_is_a_permutation():
    labels = _labels([7, 5, 3])
    sampler = InstanceSampler(labels, 3, 128)
    g = _gen(0)
    first = sampler.epoch_indices(0, 2, g)
    second = sampler.epoch_indices(1, 2, g)
    for perm in (first, second):
        assert perm.dtype == torch.int64
        assert sorted(perm.tolist()) == list(range(len(labels)))
    # shuffled, and a new order each epoch
    assert first.tolist() != list(range(len(labels)))
    assert not torch.equal(first, second)
    # same seed, same order
    assert torch.equal(first, sampler.epoch_indices(0, 2, _gen(0)))


def test_file_batches_send_uint8_and_normalise_like_torchvision(tmp_path):
    """ImageNet-LT workers hand over uint8; the device-side normalisation equals ToTensor + Normalize."""
    from PIL import Image
    from torchvision import transforms as T

    from harness.data import DATASETS, DataOptions
    from harness.data.pipeline import FileBatches
    from tests import fakes

    fakes.write_imagenet_lt(tmp_path)
    data = DATASETS.get("imagenet-lt").build(None, DataOptions(root=str(tmp_path)))
    batches = FileBatches(data.test, data, torch.device("cpu"), train=False, workers=0, channels_last=True)
    raw, _ = batches.dataset[0]
    assert raw.dtype == torch.uint8 and raw.shape == (3, 224, 224)

    images, labels = next(batches.eval_batches(batch_size=4))
    reference = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(data.mean, data.std)])
    for i in range(len(labels)):
        with Image.open(data.test.root / data.test.paths[i]) as img:
            expected = reference(img.convert("RGB"))
        torch.testing.assert_close(images[i], expected, atol=1e-5, rtol=1e-5)
    assert labels.tolist() == [int(c) for c in data.test.labels[: len(labels)]]
    assert images.is_contiguous(memory_format=torch.channels_last)


def test_file_batches_replay_their_augmentation_from_the_epoch_generator(tmp_path):
    """A resumed ImageNet-LT trial replays an epoch's augmentation exactly: the draws depend on the epoch's
    generator alone, not on the process, the global RNG or which DataLoader worker decodes an image."""
    from harness.data import DATASETS, DataOptions
    from harness.data.pipeline import FileBatches
    from tests import fakes

    fakes.write_imagenet_lt(tmp_path)
    data = DATASETS.get("imagenet-lt").build(None, DataOptions(root=str(tmp_path)))
    indices = torch.arange(len(data.train))

    def epoch(workers: int, seed: int) -> torch.Tensor:
        batches = FileBatches(data.train, data, torch.device("cpu"), train=True, workers=workers)
        torch.manual_seed(1234 + workers)  # the global RNG must not matter
        gen = torch.Generator().manual_seed(seed)
        return torch.cat([x for x, _ in batches.train_batches(indices, 3, gen)])

    first = epoch(0, seed=7)
    torch.testing.assert_close(epoch(0, seed=7), first)
    torch.testing.assert_close(epoch(2, seed=7), first)
    assert not torch.equal(epoch(0, seed=8), first)


def test_imagenet_lt_augmentation_policy_is_a_data_option(tmp_path):
    """Kang et al.'s code jitters colour (ColorJitter 0.4/0.4/0.4); Menon et al. crop and flip only: the data option
    `augmentation` names the policy, and a suite that sets crop-flip gets training batches without the jitter."""
    from torchvision import transforms as T

    from harness.data import DATASETS, DataOptions
    from harness.data.pipeline import make_batches
    from tests import fakes

    fakes.write_imagenet_lt(tmp_path)

    def train_transforms(augmentation: str) -> list[type]:
        options = DataOptions(root=str(tmp_path), augmentation=augmentation)
        data = DATASETS.get("imagenet-lt").build(None, options)
        batches = make_batches(data.train, data, torch.device("cpu"), True, 0, True, 0, False, options.augmentation)
        return [type(t) for t in batches.dataset.transform.transforms]

    assert T.ColorJitter in train_transforms("standard")
    assert train_transforms("crop-flip") == [T.RandomResizedCrop, T.RandomHorizontalFlip, T.PILToTensor]


def test_unknown_augmentation_is_a_user_error():
    from harness.core.errors import LtbenchError
    from harness.experiment.suite import build_suite

    with pytest.raises(LtbenchError, match="augmentation"):
        build_suite("quick", ["data.augmentation=autoaugment"])


# -- views and the paired stream (Method.views, Method.paired_sampler) -------------------------------------


def _tensor_batches(n: int = 20) -> TensorBatches:
    from types import SimpleNamespace

    split = ArraySplit(_images(b=n).numpy(), np.arange(n) % 4)
    return TensorBatches(split, SimpleNamespace(mean=(0.5,) * 3, std=(0.25,) * 3), torch.device("cpu"), 2, True)


def test_each_view_is_its_policy_applied_to_the_batchs_unaugmented_images():
    batches = _tensor_batches()
    indices = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])
    got = list(batches.viewed_batches(indices, 3, _gen(), ("flip:1", "crop:0")))
    assert [len(labels) for _, labels in got] == [3, 3, 2]
    plain = list(batches.train_batches(indices, 3, _gen()))
    for (viewed, labels), (standard, plain_labels), idx in zip(got, plain, indices.split(3), strict=True):
        raw = batches.images.index_select(0, idx)
        assert torch.equal(viewed.views[0], batches.normalise(raw.flip(3)))
        assert torch.equal(viewed.views[1], batches.normalise(raw))  # crop:0 leaves the images as they are
        assert torch.equal(viewed.images, standard) and torch.equal(labels, plain_labels)
        assert viewed.paired is None


def test_the_paired_stream_walks_beside_the_main_one_cycling_when_shorter():
    batches = _tensor_batches()
    indices, paired = torch.arange(7), torch.tensor([10, 11, 12])
    got = list(batches.viewed_batches(indices, 3, _gen(), ("flip:1",), paired))
    seen = torch.cat([viewed.paired[1] for viewed, _ in got])
    assert torch.equal(seen, batches.labels[torch.tensor([10, 11, 12, 10, 11, 12, 10])])
    first = got[0][0].paired
    assert torch.equal(first[2][0], batches.normalise(batches.images[10:13].flip(3)))  # its views too


def test_views_replay_from_the_same_generator_state():
    batches = _tensor_batches()
    indices = torch.arange(10)

    def run(seed: int) -> list[torch.Tensor]:
        return [v.views[0] for v, _ in batches.viewed_batches(indices, 4, _gen(seed), ("crop:2+flip",))]

    assert all(torch.equal(a, b) for a, b in zip(run(1), run(1), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(run(1), run(2), strict=True))
