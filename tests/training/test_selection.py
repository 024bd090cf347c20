"""Every choice made on validation (τ*, the best epoch) breaks ties by a stated rule, never "the first"."""

from __future__ import annotations

import pytest

from harness.training.decoupled import ValScore, choose, cosine_per_epoch


def test_the_best_validation_accuracy_wins() -> None:
    assert choose([ValScore(0.5, 1.0), ValScore(0.7, 9.0), ValScore(0.6, 0.1)]) == 1


def test_ties_on_accuracy_are_broken_by_validation_loss() -> None:
    assert choose([ValScore(0.7, 0.9), ValScore(0.7, 0.4), ValScore(0.7, 0.8), ValScore(0.5, 0.1)]) == 1


def test_a_plateau_tied_on_both_gives_its_middle_not_its_first_point() -> None:
    plateau = [ValScore(0.4, 1.0)] + [ValScore(0.8, 0.5)] * 5 + [ValScore(0.6, 1.0)]
    assert choose(plateau) == 3  # indices 1..5 tie: the middle is 3
    assert choose([ValScore(0.8, 0.5)] * 4) == 1  # an even plateau: the lower middle


def test_choose_needs_candidates() -> None:
    with pytest.raises(ValueError):
        choose([])


def test_cosine_stepped_per_epoch_as_each_official_loop_steps_it() -> None:
    # Kang et al. step the scheduler at the start of each epoch: the first epoch already runs below the base lr
    # and the last at 0; LORT's code steps after each epoch: the first epoch runs at the base lr
    assert [round(cosine_per_epoch(e, 2, shift=1), 6) for e in range(2)] == [0.5, 0.0]
    assert [round(cosine_per_epoch(e, 2, shift=0), 6) for e in range(2)] == [1.0, 0.5]
