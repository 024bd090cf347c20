"""`gaussian-blur`: PIL's GaussianBlur (three extended box blurs per axis, in its fixed point) image for image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from harness.data.augment import apply_policy


def pil_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """PIL's own blur of one uint8 (C, H, W) image: what MoCo's `GaussianBlur` does to a PIL image."""
    array = image.permute(1, 2, 0).numpy()
    pil = Image.fromarray(array[..., 0] if image.shape[0] == 1 else array)
    out = np.array(pil.filter(ImageFilter.GaussianBlur(radius=sigma)))
    return torch.from_numpy(out.reshape(*out.shape[:2], -1)).permute(2, 0, 1)


@pytest.mark.parametrize("channels, size", [(3, 32), (1, 28), (3, 9)])
def test_each_blurred_image_is_pils(channels: int, size: int) -> None:
    images = torch.randint(
        0, 256, (12, channels, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    ours = apply_policy("gaussian-blur:0.6:0.1:2", images, torch.Generator().manual_seed(7))
    draws = torch.Generator().manual_seed(7)  # the op's draws: every apply flag, then every σ
    apply = torch.rand(12, generator=draws) < 0.6
    sigma = 0.1 + 1.9 * torch.rand(12, generator=draws, dtype=torch.float64)
    assert 0 < int(apply.sum()) < 12
    for b in range(12):
        expected = pil_blur(images[b], float(sigma[b])) if apply[b] else images[b]
        assert torch.equal(ours[b], expected), (b, float(sigma[b]))


def test_probability_zero_keeps_the_images_and_still_draws() -> None:
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    generator = torch.Generator().manual_seed(3)
    assert torch.equal(apply_policy("gaussian-blur:0", images, generator), images)
    reference = torch.Generator().manual_seed(3)
    torch.rand(4, generator=reference), torch.rand(4, generator=reference, dtype=torch.float64)
    assert torch.equal(generator.get_state(), reference.get_state())  # a fixed number of draws per image
