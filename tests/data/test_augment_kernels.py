"""The batched per-image kernels against torchvision's own tensor functions, image by image, same parameters.

Equal exactly, except where a test says why not (a resize's float operations in another order).
"""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.functional as tvf
from torchvision.transforms import InterpolationMode

from harness.data import augment_kernels as K


def batch(channels: int, h: int = 13, w: int = 11, n: int = 5, seed: int = 0) -> torch.Tensor:
    """Random images, one of them with a flat first channel and one low-contrast (the edge cases of autocontrast
    and equalize)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, channels, h, w), generator=g, dtype=torch.uint8)
    x[1, 0] = 77
    x[2] = torch.randint(100, 110, (channels, h, w), generator=g, dtype=torch.uint8)
    return x


SHAPES = [(3, 13, 11), (1, 28, 28), (3, 32, 32)]
FACTORS = torch.tensor([0.1, 0.55, 1.0, 1.37, 1.9], dtype=torch.float64)


def per_image(fn, images: torch.Tensor, params) -> torch.Tensor:  # noqa: ANN001
    return torch.stack([fn(img, float(p)) for img, p in zip(images, params, strict=True)])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (K.brightness, tvf.adjust_brightness),
        (K.saturation, tvf.adjust_saturation),
        (K.contrast, tvf.adjust_contrast),
        (K.sharpness, tvf.adjust_sharpness),
    ],
    ids=["brightness", "saturation", "contrast", "sharpness"],
)
def test_blends_equal_torchvision(shape, ours, theirs) -> None:  # noqa: ANN001
    x = batch(*shape)
    assert torch.equal(ours(x, FACTORS), per_image(theirs, x, FACTORS))


@pytest.mark.parametrize("shape", SHAPES)
def test_hue_equals_torchvision(shape) -> None:  # noqa: ANN001
    x = batch(*shape)
    shifts = torch.tensor([-0.5, -0.21, 0.0, 0.07, 0.5], dtype=torch.float64)
    assert torch.equal(K.hue(x, shifts), per_image(tvf.adjust_hue, x, shifts))


@pytest.mark.parametrize("shape", SHAPES)
def test_posterize_solarize_equal_torchvision(shape) -> None:  # noqa: ANN001
    x = batch(*shape)
    bits = torch.tensor([8, 7, 5, 4, 1])
    assert torch.equal(K.posterize(x, bits), per_image(lambda i, b: tvf.posterize(i, int(b)), x, bits))
    # torchvision's own thresholds: linspace(255, 0, 10) in float32, some not integers
    thresholds = torch.linspace(255.0, 0.0, 10)[[0, 2, 3, 6, 9]]
    assert torch.equal(K.solarize(x, thresholds), per_image(tvf.solarize, x, thresholds))


@pytest.mark.parametrize("shape", SHAPES)
def test_parameterless_ops_equal_torchvision(shape) -> None:  # noqa: ANN001
    x = batch(*shape)
    assert torch.equal(K.autocontrast(x), torch.stack([tvf.autocontrast(i) for i in x]))
    assert torch.equal(K.equalize(x), torch.stack([tvf.equalize(i) for i in x]))
    assert torch.equal(K.invert(x), torch.stack([tvf.invert(i) for i in x]))
    grey = torch.stack([tvf.rgb_to_grayscale(i, num_output_channels=1) for i in x])
    assert torch.equal(K.luma(x), grey)


def test_equalize_leaves_a_channel_with_too_few_values_alone() -> None:
    x = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    x[0, 0, 0, 0] = 9  # two distinct values, one pixel of the top one: step = 15 // 255 = 0
    assert torch.equal(K.equalize(x), x)


def affine_cases(h: int, w: int) -> list[tuple[list[float], dict]]:
    """(our matrix, torchvision's affine/rotate keyword arguments) for every geometric AutoAugment sub-op."""
    cases = []
    for m in (0.3, -0.1667, 0.0333):
        shear = math.degrees(math.atan(m))
        corner = (-w * 0.5, -h * 0.5)  # torchvision's AutoAugment shears about the top-left corner
        cases.append((K.inverse_affine(0.0, (0, 0), (shear, 0.0), corner), {"shear": [shear, 0.0], "center": [0, 0]}))
        cases.append((K.inverse_affine(0.0, (0, 0), (0.0, shear), corner), {"shear": [0.0, shear], "center": [0, 0]}))
    for t in (-14, 3, 9):
        cases.append((K.inverse_affine(0.0, (t, 0), (0, 0), (0, 0)), {"translate": [t, 0]}))
        cases.append((K.inverse_affine(0.0, (0, t), (0, 0), (0, 0)), {"translate": [0, t]}))
    for angle in (30.0, -6.666666507720947, 13.0):
        # F.rotate builds its matrix with -angle
        cases.append((K.inverse_affine(-angle, (0, 0), (0, 0), (0, 0)), {"rotate": angle}))
    return cases


def torchvision_affine(img: torch.Tensor, kwargs: dict, fill: list[float] | None) -> torch.Tensor:
    nearest = InterpolationMode.NEAREST
    if "rotate" in kwargs:
        return tvf.rotate(img, kwargs["rotate"], interpolation=nearest, fill=fill)
    args = {"angle": 0.0, "translate": [0, 0], "scale": 1.0, "shear": [0.0, 0.0], **kwargs}
    return tvf.affine(img, interpolation=nearest, fill=fill, **args)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("fill", [None, 128.0])
def test_warp_equals_torchvision_affine_and_rotate(shape, fill) -> None:  # noqa: ANN001
    c, h, w = shape
    cases = affine_cases(h, w)
    x = batch(c, h, w, n=len(cases))
    thetas = torch.tensor([m for m, _ in cases], dtype=torch.float32).view(-1, 2, 3)
    ours = K.warp(x, thetas, fill=fill)
    theirs = torch.stack(
        [
            torchvision_affine(img, kw, None if fill is None else [fill] * c)
            for img, (_, kw) in zip(x, cases, strict=True)
        ]
    )
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("shape", SHAPES)
def test_resized_crop_is_torchvisions_within_one_level(shape) -> None:  # noqa: ANN001
    c, h, w = shape
    boxes = torch.tensor([[0, 0, h, w], [2, 1, h // 2, w - 3], [h - 4, w - 3, 4, 3], [1, 2, 5, 7], [0, 0, 1, 1]])
    x = batch(c, h, w)
    ours = K.resized_crop(x, boxes)
    theirs = torch.stack(
        [
            tvf.resized_crop(img, *map(int, box), [h, w], InterpolationMode.BILINEAR, antialias=True)
            for img, box in zip(x, boxes, strict=True)
        ]
    )
    # the same interpolation, float operations in another order: a value at a rounding half may differ by one
    diff = (ours.int() - theirs.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01
    assert torch.equal(ours[0], x[0])  # the whole image is itself
