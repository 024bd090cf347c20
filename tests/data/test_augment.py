"""Augmentation policies: parsing, and the basic ops against the engine's own crop-and-flip."""

from __future__ import annotations

import pytest
import torch

from harness.core.errors import LtbenchError
from harness.data.augment import apply_policy, check_policy
from harness.data.pipeline import random_crop_flip


def images(n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 8, 8), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_crop_then_flip_is_the_engines_crop_flip_draw_for_draw() -> None:
    batch = images()
    ours = apply_policy("crop:4+flip", batch, torch.Generator().manual_seed(3))
    engine = random_crop_flip(batch, 4, True, torch.Generator().manual_seed(3))
    assert torch.equal(ours, engine)


def test_the_same_generator_state_replays_the_same_views() -> None:
    batch = images()
    a = apply_policy("crop:2+flip", batch, torch.Generator().manual_seed(5))
    b = apply_policy("crop:2+flip", batch, torch.Generator().manual_seed(5))
    c = apply_policy("crop:2+flip", batch, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_flip_with_probability_one_mirrors_every_image() -> None:
    batch = images()
    assert torch.equal(apply_policy("flip:1", batch, torch.Generator()), batch.flip(3))


@pytest.mark.parametrize(
    ("policy", "says"),
    [
        ("", "non-empty string"),
        ("crop+emboss", "unknown augmentation op 'emboss'"),
        ("crop:4:4", "takes at most 1 argument"),
        ("crop:four", "arguments must be numbers"),
    ],
)
def test_a_bad_policy_is_one_clear_line(policy: str, says: str) -> None:
    with pytest.raises(LtbenchError, match=says):
        check_policy(policy)
