"""On a GPU every augmentation op makes the views it makes on the CPU from the same generator state (the draws
are CPU tensors, so only the arithmetic's device changes)."""

from __future__ import annotations

import pytest
import torch

from harness.data.augment import apply_policy

# integer arithmetic, comparisons and float blends done op by op: the same on every device
EXACT = [
    "crop:4+flip",
    "cutout:16",
    "color-jitter:0.4:0.4:0.4:0.1:1",
    "color-jitter-pil:0.4:0.4:0.4:0.1:1",
    "grayscale:0.5",
    "grayscale-pil:0.5",
    "blur:1:0.1:2",
    "resized-crop-pil:0.2:1",
]
# a sampling grid or a bilinear resize: a GPU's float rounding may move a nearest sample at a tie or a
# bilinear value by one level, on a handful of pixels
NEAR = ["autoaugment", "cifar10-policy", "randaugment:2:9", "randaugment:3:30", "resized-crop:0.2:1"]


def images(c: int, size: int) -> torch.Tensor:
    return torch.randint(0, 256, (64, c, size, size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


@pytest.mark.gpu
@pytest.mark.parametrize("policy", EXACT + NEAR)
@pytest.mark.parametrize(("channels", "size"), [(3, 32), (1, 28)])
def test_a_policy_on_the_gpu_makes_the_cpu_views(policy: str, channels: int, size: int) -> None:
    x = images(channels, size)
    cpu = apply_policy(policy, x, torch.Generator().manual_seed(1))
    gpu = apply_policy(policy, x.cuda(), torch.Generator().manual_seed(1)).cpu()
    if policy in EXACT:
        assert torch.equal(gpu, cpu)
    else:
        assert (gpu != cpu).float().mean() < 1e-3
