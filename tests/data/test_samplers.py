"""The samplers beyond the power family: progressive, Kang's class-aware, and the B3RS / BET reconstructions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.data.samplers import ClassAwareSampler, ProgressiveSampler
from methods.channel_whitening import B3RSSampler, BETSampler

COUNTS = [200, 80, 30, 10, 5]
LABELS = np.repeat(np.arange(len(COUNTS)), COUNTS)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_progressive_moves_from_instance_to_class_balanced() -> None:
    sampler = ProgressiveSampler(LABELS, 5, 32)
    instance = torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS)
    # Kang et al.'s code interpolates with linspace(0, 1, T): instance-balanced at the first epoch and
    # class-balanced at the last (epoch T-1), not one epoch past the end
    torch.testing.assert_close(sampler.class_probabilities(0, 10), instance)
    torch.testing.assert_close(sampler.class_probabilities(9, 10), torch.full((5,), 0.2, dtype=torch.float64))
    torch.testing.assert_close(sampler.class_probabilities(3, 7), (instance + 0.2) / 2)


def test_class_aware_draws_four_of_a_class_and_balances_classes() -> None:
    sampler = ClassAwareSampler(LABELS, 5, 32)
    # Kang's loop cuts every epoch at int(N / batch) steps, whatever the sampler's nominal n_max x C draws
    assert sampler.epoch_length() == (len(LABELS) // 32) * 32
    draws = sampler.epoch_indices(0, 1, generator())
    classes = torch.as_tensor(LABELS)[draws]
    runs = classes.view(-1, 4)
    assert (runs == runs[:, :1]).all()  # 4 consecutive images of one class
    counts = torch.bincount(classes, minlength=5)
    assert counts.tolist() == [64] * 5  # 80 runs of 4 from a shuffled class cycle: exactly equal here
    small = draws[classes == 4]
    assert set(small.tolist()) == set(np.flatnonzero(LABELS == 4).tolist())  # the tail class cycles through all


def test_class_aware_cycles_carry_on_across_epochs() -> None:
    """Kang's RandomCycleIters outlive the epoch: a tail class's image cycle started in epoch 0 is finished in
    epoch 1 before any image repeats, and the sampler's state restores a resumed trial's draws exactly."""
    labels = np.repeat(np.arange(3), [40, 10, 6])
    sampler = ClassAwareSampler(labels, 3, 8)  # 7 batches of 8 = 56 draws, 14 runs of 4: 4 or 5 per class
    first = sampler.epoch_indices(0, 2, generator(0))
    state = sampler.state_dict()
    second = sampler.epoch_indices(1, 2, generator(1))
    tail = np.flatnonzero(labels == 2).tolist()
    draws = [int(i) for i in torch.cat([first, second]) if int(i) in tail]
    # 6 images in a cycle: each block of 6 consecutive tail draws is one whole cycle, across the boundary too
    for start in range(0, len(draws) - 5, 6):
        assert sorted(draws[start : start + 6]) == tail
    # a fresh sampler restarts its cycles; one restored from the state draws the same second epoch
    resumed = ClassAwareSampler(labels, 3, 8)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.epoch_indices(1, 2, generator(1)), second)
    assert not torch.equal(ClassAwareSampler(labels, 3, 8).epoch_indices(1, 2, generator(1)), second)


def test_b3rs_gives_every_group_a_share_per_batch() -> None:
    sampler = B3RSSampler(LABELS, 5, 32, groups=3, q=0.5)
    assert [g.tolist() for g in sampler.groups] == [[0, 1], [2, 3], [4]]  # sorted by size, contiguous
    slots = sampler.slots_per_batch(32)
    assert sum(slots) == 32 and min(slots) >= 1
    sizes = np.array([280, 40, 5], dtype=float)
    share = np.sqrt(sizes) / np.sqrt(sizes).sum()
    assert np.abs(np.array(slots) / 32 - share).max() < 0.07
    draws = sampler.epoch_indices(0, 1, generator()).view(-1, 32)
    group_of = {0: 0, 1: 0, 2: 1, 3: 1, 4: 2}
    for batch in draws:
        groups = [group_of[int(LABELS[i])] for i in batch]
        assert [groups.count(g) for g in range(3)] == slots


def test_bet_embeds_a_b3rs_sub_batch_in_each_instance_batch() -> None:
    sampler = BETSampler(LABELS, 5, 32, groups=3, q=0.5, embed_fraction=0.25)
    assert sampler.embedded == 8
    batches = sampler.epoch_indices(0, 1, generator()).view(-1, 32)
    instance_parts = batches[:, :24].flatten()
    # the instance parts walk one permutation: no image repeats until every image has been seen
    assert len(set(instance_parts[: len(LABELS)].tolist())) == min(len(LABELS), len(instance_parts))
    group_of = {0: 0, 1: 0, 2: 1, 3: 1, 4: 2}
    for batch in batches:
        embedded_groups = [group_of[int(LABELS[i])] for i in batch[24:]]
        assert [embedded_groups.count(g) for g in range(3)] == sampler.slots_per_batch(8)


def test_b3rs_rejects_a_batch_smaller_than_its_groups() -> None:
    from harness.core.errors import LtbenchError

    with pytest.raises(LtbenchError, match="b3rs needs a batch of at least 3 images"):
        B3RSSampler(LABELS, 5, 2, groups=3).epoch_indices(0, 1, generator())
