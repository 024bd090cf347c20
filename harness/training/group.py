"""Several trials in one process: their training steps interleaved, each trial exactly as it would run alone.

A group is a list of trials, each given as its step generator (`harness.training.trainer.trial_steps`). The
group advances them in turn, one training step each, until every one has ended. Interleaving keeps the
process's device busy with several small models at once (on a GPU, a launch-bound ResNet-32 step leaves the
chip mostly idle), while each trial keeps everything that makes it itself: its key and files, its model,
optimiser, sampler and augmentation generators (all its own objects), its per-epoch checkpoint in the usual
format (so it resumes alone or in another group), its reports and its attempts.

The one state trials would otherwise share is the process's global random generators (torch's CPU and CUDA
generators, numpy's, Python's): a trial seeds them when it is built, its model's initialisation and any
method that draws from them read them, and its checkpoint saves them. So each trial's global RNG states are
swapped in before its step and saved after it, and a trial sees exactly the random stream it sees alone:
on a CPU a grouped trial's metrics and checkpoints equal its solo run's bit for bit (tested).

A trial that raises (a diverged loss, a method's bug) ends alone: `on_failed` hears of it and the others go
on. Process-wide settings (`torch.set_num_threads`, cuDNN flags) are the same for every trial of a group,
since the queue groups only trials with the same dataset, data options, model, recipe and resources.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from harness.training.checkpoint import restore_rng_states, rng_states

TrialSteps = Generator[None, None, dict[str, Any]]


@dataclass
class _Member:
    key: str
    steps: TrialSteps
    rng: dict[str, Any] | None = None  # its global RNG states while another member steps


def run_group(
    trials: dict[str, TrialSteps],
    on_done: Callable[[str, dict[str, Any]], None],
    on_failed: Callable[[str, Exception], None],
) -> None:
    """Advance every trial of `trials` (key -> step generator) one step in turn until each has ended;
    `on_done(key, result)` or `on_failed(key, error)` is called once per trial, as it ends. A group of one
    runs exactly as the trial alone (no state is swapped)."""
    members = [_Member(key, steps) for key, steps in trials.items()]
    swap = len(members) > 1
    while members:
        for member in list(members):
            if swap and member.rng is not None:
                restore_rng_states(member.rng)
            try:
                next(member.steps)
            except StopIteration as stop:
                members.remove(member)
                on_done(member.key, stop.value)
                continue
            except Exception as error:
                members.remove(member)
                on_failed(member.key, error)
                continue
            if swap:
                member.rng = rng_states()
