"""The policy and view ops against torchvision's own transforms, image by image, fed the draws our op made.

Each test transcribes the op's draw order (documented in its module) to recover every image's parameters from
the same seed, then runs torchvision's transform on that image with them (AutoAugment and RandAugment through
their real `forward`, their random draws patched to ours).
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as tvf
from PIL import ImageFilter
from torchvision.transforms import InterpolationMode

import harness.data.augment_kernels as K
import harness.data.augment_policies as P
from harness.core.errors import LtbenchError
from harness.data.augment import apply_policy, check_policy


def images(n: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Random images with a smooth part (so geometric ops move structure, and equalize has work to do)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, 256, (n, c, h, w), generator=g)
    ramp = torch.arange(h)[:, None] * 255 // h + torch.arange(w)[None, :] * 0
    return torch.where(torch.arange(w) < w // 2, ramp, noise).to(torch.uint8)


SHAPES = [(3, 32, 32), (1, 28, 28), (3, 13, 11)]


@pytest.mark.parametrize(("shape", "n"), [((3, 32, 32), 100), ((1, 28, 28), 50), ((3, 13, 11), 30)])
def test_autoaugment_is_torchvisions_autoaugment_image_by_image(shape, n, monkeypatch) -> None:  # noqa: ANN001
    x = images(n, *shape)
    ours = apply_policy("autoaugment", x, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)  # the op's draws: sub-policy, the two probabilities, the two signs
    policy = torch.randint(25, (n,), generator=g)
    probs = torch.rand(n, 2, generator=g)
    signs = torch.randint(2, (n, 2), generator=g)
    transform = T.AutoAugment(T.AutoAugmentPolicy.CIFAR10)
    for i in range(n):
        params = (int(policy[i]), probs[i], signs[i])
        monkeypatch.setattr(T.AutoAugment, "get_params", staticmethod(lambda _n, p=params: p))
        assert torch.equal(ours[i], transform(x[i])), (i, P.CIFAR10_POLICY[int(policy[i])], probs[i], signs[i])


@pytest.mark.parametrize(("shape", "num_ops", "magnitude"), [(SHAPES[0], 2, 9), (SHAPES[1], 3, 30), (SHAPES[2], 1, 0)])
def test_randaugment_is_torchvisions_randaugment_image_by_image(shape, num_ops, magnitude, monkeypatch) -> None:  # noqa: ANN001
    n = 40
    x = images(n, *shape, seed=1)
    ours = apply_policy(f"randaugment:{num_ops}:{magnitude}", x, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)  # the op's draws: all op indices, then all signs
    ops = torch.randint(14, (n, num_ops), generator=g)
    signs = torch.randint(2, (n, num_ops), generator=g)
    transform = T.RandAugment(num_ops=num_ops, magnitude=magnitude, num_magnitude_bins=31)
    real_randint = torch.randint
    for i in range(n):
        k = -1

        def draws(high, size, i=i):  # noqa: ANN001, ANN202  (torchvision draws an op, then its sign if signed)
            nonlocal k
            if high == 14:
                k += 1
                return torch.tensor([int(ops[i, k])])
            return torch.tensor([int(signs[i, k])])

        monkeypatch.setattr(torch, "randint", draws)
        theirs = transform(x[i])
        monkeypatch.setattr(torch, "randint", real_randint)
        assert torch.equal(ours[i], theirs), (i, ops[i], signs[i])


def test_autoaugment_picks_its_sub_ops_as_often_as_the_policy_says() -> None:
    n = 20000
    ops, _ = P.policy_plan(n, torch.Generator().manual_seed(0))
    seen = Counter(P.OPS[i] for i in ops.flatten().tolist())
    expected = Counter()
    for sub in P.CIFAR10_POLICY:
        for name, p, _ in sub:
            expected[name] += n * p / len(P.CIFAR10_POLICY)
    expected["Identity"] = 2 * n - sum(expected.values())
    for name in P.OPS:
        # a binomial count's standard deviation is at most sqrt(n·2)/2 ~ 100; allow 5 of them
        assert abs(seen[name] - expected[name]) < 500, (name, seen[name], expected[name])
    assert seen["Invert"] > 0 and seen["Rotate"] > 0


def test_the_official_policy_never_turns_clockwise_and_fills_gray() -> None:
    ops, bins = P.policy_plan(5000, torch.Generator().manual_seed(0), signed_rotate=False)
    assert (bins[ops == P.OP_INDEX["Rotate"]] > 0).all()
    x = torch.zeros(4, 3, 32, 32, dtype=torch.uint8) + 200
    thetas = torch.tensor([P.OFFICIAL.theta("Rotate", 30.0, 32, 32)] * 4, dtype=torch.float32).view(-1, 2, 3)
    corner = K.warp(x, thetas, "nearest", P.OFFICIAL.fill)[:, :, 0, 0]
    assert (corner == 128).all()


@pytest.mark.parametrize(
    "policy", ["autoaugment", "cifar10-policy", "randaugment:2:14", "crop:4+flip+autoaugment+cutout:16"]
)
def test_the_same_generator_state_replays_the_same_views_and_another_seed_differs(policy: str) -> None:
    x = images(16, 3, 32, 32)
    a = apply_policy(policy, x, torch.Generator().manual_seed(5))
    b = apply_policy(policy, x, torch.Generator().manual_seed(5))
    c = apply_policy(policy, x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    ("policy", "says"),
    [
        ("randaugment:2:31", "0 <= M <= 30"),
        ("randaugment:1.5", "whole numbers"),
        ("crop+cutout:-1", "side must be >= 0"),
        ("resized-crop:0.5:0.2", "SMIN <= SMAX"),
        ("color-jitter:0.4:0.4:0.4:0.6", "H <= 0.5"),
        ("color-jitter:0.4:0.4:0.4:0.1:2", "probability"),
        ("grayscale:-0.1", "probability"),
        ("autoaugment:3", "at most 0 argument"),
    ],
)
def test_bad_arguments_are_refused_when_the_policy_is_checked(policy: str, says: str) -> None:
    with pytest.raises(LtbenchError, match=says):
        check_policy(policy)


def test_cutout_is_the_official_cutout_on_the_same_centres() -> None:
    n, length = 40, 16
    x = images(n, 3, 32, 32)
    ours = apply_policy(f"cutout:{length}", x, torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)  # the op's draws: every row centre, then every column centre
    ys, xs = torch.randint(0, 32, (n,), generator=g), torch.randint(0, 32, (n,), generator=g)
    for i in range(n):
        # transcription of PaCo/LT/autoaug.py Cutout.__call__ (n_holes=1), numpy clip as min/max
        y, xc = int(ys[i]), int(xs[i])
        y1, y2 = min(max(y - length // 2, 0), 32), min(max(y + length // 2, 0), 32)
        x1, x2 = min(max(xc - length // 2, 0), 32), min(max(xc + length // 2, 0), 32)
        mask = torch.ones(32, 32)
        mask[y1:y2, x1:x2] = 0.0
        assert torch.equal(ours[i], (x[i] * mask).to(torch.uint8)), i


def torchvision_box(h: int, w: int, scale: tuple[float, float], area: list[float], logr: list[float], off) -> tuple:  # noqa: ANN001
    """Transcription of RandomResizedCrop.get_params, its uniforms replaced by the op's draws."""
    for target_frac, log_ratio in zip(area, logr, strict=True):
        target = h * w * target_frac
        ratio = math.exp(log_ratio)
        bw, bh = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
        if 0 < bw <= w and 0 < bh <= h:
            return int(off[0] * (h - bh + 1)), int(off[1] * (w - bw + 1)), bh, bw
    in_ratio = w / h
    if in_ratio < 3 / 4:
        bw, bh = w, int(round(w / (3 / 4)))
    elif in_ratio > 4 / 3:
        bh, bw = h, int(round(h * (4 / 3)))
    else:
        bw, bh = w, h
    return (h - bh) // 2, (w - bw) // 2, bh, bw


@pytest.mark.parametrize("pil", [False, True], ids=["tensor", "pil"])
@pytest.mark.parametrize(
    ("shape", "scale"), [(SHAPES[0], (0.08, 1.0)), (SHAPES[1], (0.2, 1.0)), (SHAPES[2], (0.95, 1.0))]
)
def test_resized_crop_is_torchvisions(shape, scale, pil: bool) -> None:  # noqa: ANN001
    n, (c, h, w) = 30, shape
    x = images(n, c, h, w)
    name = "resized-crop-pil" if pil else "resized-crop"
    ours = apply_policy(f"{name}:{scale[0]}:{scale[1]}", x, torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)  # area fractions (B, 10), log ratios (B, 10), offsets (B, 2)
    area = scale[0] + (scale[1] - scale[0]) * torch.rand(n, 10, generator=g, dtype=torch.float64)
    lo, hi = math.log(3 / 4), math.log(4 / 3)
    logr = lo + (hi - lo) * torch.rand(n, 10, generator=g, dtype=torch.float64)
    off = torch.rand(n, 2, generator=g, dtype=torch.float64)
    for i in range(n):
        box = torchvision_box(h, w, scale, area[i].tolist(), logr[i].tolist(), off[i].tolist())
        if pil:  # Pillow's fixed-point resize, transcribed: equal
            theirs = tvf.pil_to_tensor(
                tvf.resized_crop(tvf.to_pil_image(x[i]), *box, [h, w], InterpolationMode.BILINEAR)
            )
            assert torch.equal(ours[i], theirs), (i, box)
        else:  # interpolate's float operations in another order: a value at a rounding half may differ by one
            theirs = tvf.resized_crop(x[i], *box, [h, w], InterpolationMode.BILINEAR, antialias=True)
            assert (ours[i].int() - theirs.int()).abs().max() <= 1, (i, box)


@pytest.mark.parametrize("pil", [False, True], ids=["tensor", "pil"])
@pytest.mark.parametrize(
    ("shape", "args"),
    [
        (SHAPES[0], (0.4, 0.4, 0.4, 0.1, 0.8)),
        (SHAPES[1], (0.8, 0.0, 0.3, 0.0, 1.0)),
        (SHAPES[2], (0.0, 0.5, 0.0, 0.5, 1.0)),
    ],
)
def test_color_jitter_is_torchvisions_in_each_images_order(shape, args, pil: bool) -> None:  # noqa: ANN001
    """`color-jitter` against torchvision's functions on the uint8 tensor, `color-jitter-pil` against the same
    functions on the PIL image (torchvision's PIL path: ImageEnhance and its 8-bit HSV hue)."""
    n = 30
    x = images(n, *shape)
    b, c, s, hue, p = args
    name = "color-jitter-pil:" if pil else "color-jitter:"
    ours = apply_policy(name + ":".join(map(str, args)), x, torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)  # applied (B,), order (B, 4) as argsort of uniforms, factors (B, 4)
    apply = torch.rand(n, generator=g) < p
    order = torch.rand(n, 4, generator=g).argsort(1)
    u = torch.rand(n, 4, generator=g, dtype=torch.float64)
    ranges = [(max(0.0, 1 - v), 1 + v) if v > 0 else None for v in (b, c, s)] + [(-hue, hue) if hue > 0 else None]
    adjust = [tvf.adjust_brightness, tvf.adjust_contrast, tvf.adjust_saturation, tvf.adjust_hue]
    for i in range(n):
        img = tvf.to_pil_image(x[i]) if pil else x[i]
        if apply[i]:
            for fn_id in order[i].tolist():  # ColorJitter.forward: each adjustment in the drawn order
                if ranges[fn_id] is not None:
                    lo, hi = ranges[fn_id]
                    img = adjust[fn_id](img, float(lo + (hi - lo) * u[i, fn_id]))
        assert torch.equal(ours[i], tvf.pil_to_tensor(img) if pil else img), i


@pytest.mark.parametrize("pil", [False, True], ids=["tensor", "pil"])
@pytest.mark.parametrize("shape", SHAPES)
def test_grayscale_is_torchvisions_rgb_to_grayscale(shape, pil: bool) -> None:  # noqa: ANN001
    x = images(20, *shape)
    ours = apply_policy("grayscale-pil:0.5" if pil else "grayscale:0.5", x, torch.Generator().manual_seed(1))
    grey = torch.rand(20, generator=torch.Generator().manual_seed(1)) < 0.5
    for i in range(20):
        img = tvf.to_pil_image(x[i]) if pil else x[i]
        out = tvf.rgb_to_grayscale(img, num_output_channels=shape[0]) if grey[i] else img
        assert torch.equal(ours[i], tvf.pil_to_tensor(out) if pil else out)


@pytest.mark.parametrize("shape", SHAPES)
def test_blur_is_pils_gaussian_blur_on_the_same_sigmas(shape) -> None:  # noqa: ANN001
    n = 12
    x = images(n, *shape)
    ours = apply_policy("blur:0.7:0.1:2", x, torch.Generator().manual_seed(8))
    g = torch.Generator().manual_seed(8)  # the op's draws: applied (B,), then sigma (B,)
    apply = torch.rand(n, generator=g) < 0.7
    sigma = 0.1 + 1.9 * torch.rand(n, generator=g, dtype=torch.float64)
    for i in range(n):
        # moco.loader.GaussianBlur: x.filter(ImageFilter.GaussianBlur(radius=sigma)) on the PIL image
        pil = tvf.to_pil_image(x[i]).filter(ImageFilter.GaussianBlur(radius=float(sigma[i])))
        assert torch.equal(ours[i], tvf.pil_to_tensor(pil) if apply[i] else x[i]), i


@pytest.mark.parametrize(
    "policy",
    [
        "autoaugment",
        "cifar10-policy",
        "randaugment:2:9",
        "cutout:16",
        "resized-crop:0.2:1",
        "resized-crop-pil:0.2:1",
        "color-jitter",
        "color-jitter-pil",
        "blur",
    ],
)
def test_an_op_draws_the_same_numbers_whatever_the_images(policy: str) -> None:
    """What an op takes from the generator depends on the batch size only, so the ops after it (and the next
    batch) draw the same numbers whatever the images were: a resumed epoch replays them."""
    after = []
    for seed in (0, 1):
        g = torch.Generator().manual_seed(3)
        apply_policy(policy, images(16, 3, 32, 32, seed=seed) // (seed + 1), g)
        after.append(torch.rand(4, generator=g))
    assert torch.equal(after[0], after[1])


@pytest.mark.parametrize("shape", SHAPES)
def test_rotate_is_torchvisions_random_rotation_image_by_image(shape) -> None:  # noqa: ANN001
    x = images(20, *shape)
    ours = apply_policy("rotate:15", x, torch.Generator().manual_seed(4))
    angles = (torch.rand(20, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 2 - 1) * 15
    for i, angle in enumerate(angles.tolist()):
        theirs = tvf.rotate(x[i], angle, InterpolationMode.NEAREST, expand=False, fill=0)
        assert torch.equal(ours[i], theirs), (i, angle)
    assert not torch.equal(ours, x)
